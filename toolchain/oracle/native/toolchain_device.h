// The one thing the cut-out supports_op needs that only the Objective-C file defines: the device
// struct (each native program defines its own in its folder's toolchain_device.h; the dry run's
// keeps more per device). Ours holds nothing but the props (struct ggml_metal_device_props, from the tree's own
// ggml-metal-device.h), filled from a device profile at run time.
#pragma once

#include "ggml-metal-device.h"

#ifdef __cplusplus
extern "C" {
#endif

struct ggml_metal_device {
    struct ggml_metal_device_props props;
};

// Generated per tree (toolchain_oracle_props.c): set one props field by name; 0 if unknown.
int toolchain_oracle_set_prop(struct ggml_metal_device * dev, const char * key, const char * value);

#ifdef __cplusplus
}
#endif
