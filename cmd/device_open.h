/* Opening a backend from a --device value: "cpu", "vulkan" (the best Vulkan device) or
 * "vulkan:N" (device N as `baton devices` lists them). */
#ifndef BATON_DEVICE_OPEN_H
#define BATON_DEVICE_OPEN_H

#include "backend.h"

/* Checks the spelling of spec without opening anything (for usage errors). */
bool device_spec_valid(const char *spec);

baton_status device_backend_open(const char *spec, const baton_model *model,
                                 const baton_stage_config *config, baton_backend **out,
                                 baton_error *err);

#endif
