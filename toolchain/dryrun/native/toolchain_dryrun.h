// Between the stand-in (toolchain_dryrun_standin.cpp) and the driver (toolchain_dryrun_main.cpp).
#pragma once

#include "toolchain_profiles.h"

#include <cstddef>
#include <vector>

// the profiles, loaded by the driver before the backend is registered (device i = profile i)
extern std::vector<toolchain_profile> g_dryrun_profiles;

// a single-device tree's ggml_metal_device_init(void) (one device per process, before ggml's virtual
// devices of 2026-02): the profile of this process, which the caller runs with a one-profile file
int toolchain_dryrun_single_device();

// called by the stand-in while a case is being encoded
void toolchain_dryrun_note_compile(const char * base, const char * name);
void toolchain_dryrun_note_dispatch(const char * base, const char * name, const int grid[3], const int tptg[3],
                                    size_t threadgroup_memory, int max_threads);

// the stand-in's answer for every pipeline's maxTotalThreadsPerThreadgroup (Apple GPUs: 1024)
constexpr int TOOLCHAIN_DRYRUN_MAX_THREADS = 1024;
