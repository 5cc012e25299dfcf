#include "procfs.h"

#include <stdio.h>
#include <string.h>

uint64_t baton_proc_kb(const char *path, const char *field) {
    FILE *f = fopen(path, "r");
    if (f == NULL) return 0;
    char line[256];
    size_t n = strlen(field);
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, field, n) == 0 && line[n] == ':' && sscanf(line + n + 1, "%llu kB", &kb) == 1)
            break;
    fclose(f);
    return (uint64_t)kb * 1024;
}
