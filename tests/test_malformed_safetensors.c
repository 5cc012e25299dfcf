/* Broken safetensors: header lengths past the file or over 100 MiB (refused before parsing),
 * invalid JSON, unsupported dtypes, bad shapes and offsets, overlapping tensors, duplicates,
 * truncation at every byte. Each is refused with a message naming the file. */
#include "test_malformed_build.h"

#define ST(json, data_bytes, status, want)                                                         \
    do {                                                                                           \
        mbuf b_ = mst_build(json, data_bytes);                                                     \
        EXPECT_REFUSED(&b_, "m.safetensors", status, want);                                        \
        free(b_.bytes);                                                                            \
    } while (0)

int main(void) {
    const char *good = "{\"__metadata__\":{\"format\":\"pt\"},"
                       "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                       "\"b\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[16,22]},"
                       "\"c\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[22,24]},"
                       "\"e\":{\"dtype\":\"F16\",\"shape\":[0,5],\"data_offsets\":[24,24]}}";
    mbuf b = mst_build(good, 24);
    CHECK(try_bytes(b.bytes, b.len, "m.safetensors") == BATON_OK);
    baton_tensor_set *set = NULL;
    REQUIRE(baton_tensor_set_from_memory(b.bytes, b.len, "m.safetensors", &set, NULL) == BATON_OK);
    CHECK(set->format == BATON_FORMAT_SAFETENSORS && set->n_tensors == 4);
    const baton_tensor *c = baton_tensor_set_find(set, "c");
    CHECK(c != NULL && c->ndim == 0 && c->n_elements == 1 && c->file_offset == 8 + strlen(good) + 22);
    CHECK(baton_tensor_set_find(set, "__metadata__") == NULL);
    baton_tensor_set_free(set);
    expect_truncations_refused(&b, "m.safetensors");

    /* Header lengths. */
    mbuf h = {0};
    mb_put(&h, b.bytes, b.len);
    mb_set_le(&h, 0, (uint64_t)1 << 40, 8);
    EXPECT_REFUSED(&h, "m.safetensors", BATON_ERR_FORMAT, "100 MiB");
    mb_set_le(&h, 0, (uint64_t)50 << 20, 8);
    EXPECT_REFUSED(&h, "m.safetensors", BATON_ERR_FORMAT, "runs past the end");
    mb_set_le(&h, 0, UINT64_MAX, 8);
    EXPECT_REFUSED(&h, "m.safetensors", BATON_ERR_FORMAT, "100 MiB");
    mb_set_le(&h, 0, strlen(good) - 1, 8);
    EXPECT_REFUSED(&h, "m.safetensors", BATON_ERR_FORMAT, "JSON");
    free(h.bytes);
    free(b.bytes);

    ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},}", 8, BATON_ERR_FORMAT, "not valid JSON");
    ST("[{\"a\":1}]", 0, BATON_ERR_FORMAT, "neither"); /* not even recognised */
    ST("{\"a\":[1,2]}", 0, BATON_ERR_FORMAT, "a: not an object");
    ST("{\"a\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, BATON_ERR_UNSUPPORTED,
       "a: dtype I64 is not supported");
    ST("{\"a\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, BATON_ERR_UNSUPPORTED, "F64");
    ST("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, BATON_ERR_FORMAT, "a: no dtype");
    ST("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, BATON_ERR_FORMAT, "a: no shape");
    ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, BATON_ERR_FORMAT, "bad shape");
    ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, BATON_ERR_FORMAT, "bad shape");
    ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4, BATON_ERR_FORMAT, "bad shape");
    ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[1e15,1e15],\"data_offsets\":[0,4]}}", 4, BATON_ERR_FORMAT, "bad shape");
    ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, BATON_ERR_UNSUPPORTED,
       "5 dimensions");
    ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, BATON_ERR_FORMAT, "bad data_offsets");
    ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, BATON_ERR_FORMAT, "bad data_offsets");
    ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,-4]}}", 4, BATON_ERR_FORMAT, "bad data_offsets");
    ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,1e300]}}", 4, BATON_ERR_FORMAT, "bad data_offsets");
    ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8, BATON_ERR_FORMAT, "needs 8");
    ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 8, BATON_ERR_FORMAT, "run past the data");
    ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
       "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
       16, BATON_ERR_FORMAT, "overlap");
    ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
       "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
       16, BATON_ERR_FORMAT, "tensor a appears twice");
    ST("{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, BATON_ERR_FORMAT, "name");
    {
        char json[600];
        char name[201];
        memset(name, 'n', 200);
        name[200] = '\0';
        snprintf(json, sizeof json, "{\"%s\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", name);
        ST(json, 4, BATON_ERR_FORMAT, "tensor name");
    }
    {
        /* Two million values: refused by counting, before cJSON would build them. */
        size_t n = 2u << 20;
        char *json = malloc(2 * n + 16);
        REQUIRE(json != NULL);
        size_t at = (size_t)sprintf(json, "{\"a\":[");
        for (size_t i = 0; i < n; i++) at += (size_t)sprintf(json + at, i ? ",0" : "0");
        strcpy(json + at, "]}");
        ST(json, 0, BATON_ERR_UNSUPPORTED, "more values");
        free(json);
    }
    {
        /* Nesting deeper than cJSON's limit fails to parse, without exhausting the stack. */
        char json[4100] = "{\"a\":";
        size_t at = strlen(json);
        for (int i = 0; i < 2000; i++) json[at++] = '[';
        for (int i = 0; i < 2000; i++) json[at++] = ']';
        strcpy(json + at, "}");
        ST(json, 0, BATON_ERR_FORMAT, "not valid JSON");
    }

    /* Neither format. */
    mbuf junk = {0};
    mb_str(&junk, "GGUF\3\0\0\0 and more");
    EXPECT_REFUSED(&junk, "m.bin", BATON_ERR_FORMAT, "neither");
    free(junk.bytes);
    junk = (mbuf){0};
    EXPECT_REFUSED(&junk, "m.bin", BATON_ERR_FORMAT, "neither");
    mb_str(&junk, "\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.");
    EXPECT_REFUSED(&junk, "old.pth", BATON_ERR_UNSUPPORTED, "legacy torch.save");
    free(junk.bytes);
    return test_result();
}
