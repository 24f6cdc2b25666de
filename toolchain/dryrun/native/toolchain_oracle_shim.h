// The dry run's device struct (replaces the oracle's shim of the same name on the include path,
// so the oracle's cut supports_op compiles against it unchanged): the props first, as the cut
// reads only dev->props, then what our stand-in for ggml-metal-device.m keeps per device.
#pragma once

#include "ggml-metal-device.h"

#ifdef __cplusplus
extern "C" {
#endif

struct ggml_metal_fusion_info;
struct ggml_metal_library;

struct ggml_metal_device {
    struct ggml_metal_device_props props;
    struct ggml_metal_fusion_info * finfo;
    struct ggml_metal_library * library;
    int profile;  // index into the profiles file
};

// Generated per tree (toolchain_oracle_props.c, by toolchain.oracle.probe.props_setter).
int toolchain_oracle_set_prop(struct ggml_metal_device * dev, const char * key, const char * value);

#ifdef __cplusplus
}
#endif
