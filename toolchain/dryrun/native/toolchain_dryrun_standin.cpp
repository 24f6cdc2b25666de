// The stand-in for the Metal backend's Objective-C layer (ggml-metal-device.m, ggml-metal-context.m):
// every function of the plain C interface in ggml-metal-device.h / ggml-metal-context.h that those
// files define, with the header's own signature (toolchain.dryrun.interface compares them and
// refuses a tree whose interface differs). Nothing runs on a GPU and nothing is computed:
//
// - a library is a name cache; compiling a pipeline records (base, name) and always succeeds (the
//   Python side checks each base name against the tree's Metal sources for the profile);
// - an encoder records every dispatch: pipeline, grid, threads per threadgroup, threadgroup memory;
// - a buffer is reserved address space (mmap, MAP_NORESERVE): tensors have addresses, no memory;
// - graph compute is the context's own loop over the tree's ggml_metal_op_encode.
//
// This file is the model, not compiled as it is: toolchain.dryrun.standin generates each tree's
// stand-in from it. Every function of the tree's interface is emitted with the tree's own signature
// (from its header): the body below when the signatures agree or the difference is only unused
// parameters, a documented default (`return {};`) for a function that decides no verdict, a refusal
// naming the function for one that does. A parameter the tree lacks that a body uses is a refusal
// too, except the few the generator can stand in for (standin.MISSING_PARAMS: a single-device tree's
// ggml_metal_device_init(void) gets `device` from toolchain_dryrun_single_device()). Functions the tree no longer declares are left out. The
// generator also defines, per tree:
//   TOOLCHAIN_TREE_HAS_FUSION_H    ggml-metal-fusion.h exists (the fusion-info object, 0.3.36 on)
//   TOOLCHAIN_PROPS_HAS_<field>    1 for each field of the tree's struct ggml_metal_device_props
//   TOOLCHAIN_OP_INIT(ctx, gf)     the tree's ggml_metal_op_init, arguments matched by name
// Each emitted body starts with the tree's own GGML_ASSERTs on that function's arguments, copied
// from its definition in the tree's .m file (only those that read nothing but the arguments).
// Interface functions here call each other only through the static helpers below (a tree may lack
// any one of them). One function starts at column 0 with the header's signature, ends with `}` at
// column 0.

#include "toolchain_dryrun.h"
#include "toolchain_device.h"

#include "ggml-metal-context.h"
#include "ggml-metal-device.h"

#include "ggml-impl.h"
#include "ggml-metal-common.h"
#if TOOLCHAIN_TREE_HAS_FUSION_H
#include "ggml-metal-fusion.h"
#endif
#include "ggml-metal-ops.h"

#include <sys/mman.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

struct ggml_metal_cv {
    int n = 0;
};

struct ggml_metal_pipeline {
    std::string base;
    std::string name;
};

struct ggml_metal_library {
    ggml_metal_device_t dev;
    ggml_metal_pipelines_t pipelines;
};

struct ggml_metal_encoder {
    std::map<int, size_t> threadgroup_memory;  // per index, as Metal keeps it on the encoder
    ggml_metal_pipeline_t pipeline = nullptr;
};

struct ggml_metal_event {
    int value = 0;
};

struct ggml_metal_rsets {
    int n = 0;
};

struct ggml_metal_buffer {
    void * base;
    size_t size;
    bool shared;
    bool owned;
};

struct ggml_metal {
    char name[128];
    ggml_metal_device_t dev;
    ggml_metal_library_t lib;
    struct ggml_metal_event * ev_cpy;  // not ggml_metal_event_t: trees before events (2026-02) lack the typedef
    struct ggml_metal_fusion_info * finfo;
    bool use_fusion;
    bool use_concurrency;
    int debug_graph;
    int n_cb;
    ggml_abort_callback abort_callback;
    void * abort_callback_data;
};

// what the interface functions share (a tree may lack any one interface function)
static void toolchain_copy_in(struct ggml_tensor * tensor, const void * data, size_t offset, size_t size) {
    memcpy((char *) tensor->data + offset, data, size);
}

static void toolchain_copy_out(const struct ggml_tensor * tensor, void * data, size_t offset, size_t size) {
    memcpy(data, (const char *) tensor->data + offset, size);
}

static ggml_metal_library_t toolchain_library_init(ggml_metal_device_t dev) {
    auto * lib = new ggml_metal_library();
    lib->dev = dev;
    lib->pipelines = ggml_metal_pipelines_init();
    return lib;
}

static void toolchain_library_free(ggml_metal_library_t lib) {
    if (!lib) {
        return;
    }
    ggml_metal_pipelines_free(lib->pipelines);
    delete lib;
}

// device i = profile i of the profiles file (a single-device tree: the process's one profile)
static ggml_metal_device_t toolchain_device_init(int device) {
    auto * dev = static_cast<ggml_metal_device_t>(calloc(1, sizeof(struct ggml_metal_device)));
    GGML_ASSERT(dev != NULL);
    GGML_ASSERT(device >= 0 && device < (int) g_dryrun_profiles.size());
    const toolchain_profile & p = g_dryrun_profiles[device];
    dev->profile = device;
    std::string unknown;
    if (!toolchain_set_props(dev, p.props, unknown)) {
        GGML_ABORT("toolchain-metal-dryrun: profile %s: no props field %s in this tree", p.name.c_str(), unknown.c_str());
    }
#if TOOLCHAIN_PROPS_HAS_device
    dev->props.device = device;  // single-device trees' props have no device index
#endif
    snprintf(dev->props.name, sizeof(dev->props.name), "%s", p.name.c_str());
#if TOOLCHAIN_PROPS_HAS_desc
    snprintf(dev->props.desc, sizeof(dev->props.desc), "%s", p.desc.c_str());
#endif
    // buffer sizes are not modelled: tensors only need addresses (their memory is never touched)
    if (dev->props.max_buffer_size == 0) {
        dev->props.max_buffer_size = (size_t) 1 << 40;
    }
    if (dev->props.max_working_set_size == 0) {
        dev->props.max_working_set_size = (size_t) 1 << 40;
    }
#if TOOLCHAIN_TREE_HAS_FUSION_H
    dev->finfo = ggml_metal_fusion_info_init(true, 0);
#else
    dev->finfo = nullptr;  // before ggml-metal-fusion.h the context kept use_fusion itself
#endif
    dev->library = toolchain_library_init(dev);
    return dev;
}

extern "C" {

ggml_metal_cv_t ggml_metal_cv_init(void) {
    return new ggml_metal_cv();
}

void ggml_metal_cv_free(ggml_metal_cv_t cv) {
    delete cv;
}

void ggml_metal_cv_set_int16(ggml_metal_cv_t cv, int16_t value, int32_t idx) {
    (void) value; (void) idx;
    cv->n++;
}

void ggml_metal_cv_set_int32(ggml_metal_cv_t cv, int32_t value, int32_t idx) {
    (void) value; (void) idx;
    cv->n++;
}

void ggml_metal_cv_set_bool(ggml_metal_cv_t cv, bool value, int32_t idx) {
    (void) value; (void) idx;
    cv->n++;
}

ggml_metal_pipeline_t ggml_metal_pipeline_init(void) {
    return new ggml_metal_pipeline();
}

void ggml_metal_pipeline_free(ggml_metal_pipeline_t pipeline) {
    delete pipeline;
}

int ggml_metal_pipeline_max_theads_per_threadgroup(struct ggml_metal_pipeline_with_params pipeline) {
    (void) pipeline;
    return TOOLCHAIN_DRYRUN_MAX_THREADS;
}

ggml_metal_encoder_t ggml_metal_encoder_init(ggml_metal_cmd_buf_t cmd_buf_raw, bool concurrent) {
    (void) cmd_buf_raw; (void) concurrent;
    return new ggml_metal_encoder();
}

void ggml_metal_encoder_free(ggml_metal_encoder_t encoder) {
    delete encoder;
}

void ggml_metal_encoder_debug_group_push(ggml_metal_encoder_t encoder, const char * name) {
    (void) encoder; (void) name;
}

void ggml_metal_encoder_debug_group_pop (ggml_metal_encoder_t encoder) {
    (void) encoder;
}

void ggml_metal_encoder_set_pipeline(ggml_metal_encoder_t encoder, struct ggml_metal_pipeline_with_params pipeline) {
    if (!pipeline.pipeline) {
        // the .m aborts here too: a nil pipeline means the library lookup already failed
        GGML_ABORT("%s: nil Metal pipeline (missing kernel; see compile_pipeline log above)\n", __func__);
    }
    encoder->pipeline = pipeline.pipeline;
}

void ggml_metal_encoder_set_bytes (ggml_metal_encoder_t encoder, void * data, size_t size, int idx) {
    (void) encoder; (void) data; (void) size; (void) idx;
}

void ggml_metal_encoder_set_buffer(ggml_metal_encoder_t encoder, struct ggml_metal_buffer_id buffer, int idx) {
    (void) encoder; (void) buffer; (void) idx;
}

void ggml_metal_encoder_set_threadgroup_memory_size(ggml_metal_encoder_t encoder, size_t size, int idx) {
    // the tree's own asserts on the arguments come first (copied by the generator from the tree's .m:
    // 0.3.36 asserts size % 16 == 0, older trees pass any length to Metal)
    encoder->threadgroup_memory[idx] = size;
}

void ggml_metal_encoder_dispatch_threadgroups(ggml_metal_encoder_t encoder, int tg0, int tg1, int tg2, int tptg0, int tptg1, int tptg2) {
    size_t smem = 0;
    for (const auto & kv : encoder->threadgroup_memory) {
        smem += kv.second;
    }
    const int grid[3] = {tg0, tg1, tg2};
    const int tptg[3] = {tptg0, tptg1, tptg2};
    const ggml_metal_pipeline_t p = encoder->pipeline;
    toolchain_dryrun_note_dispatch(p ? p->base.c_str() : "", p ? p->name.c_str() : "", grid, tptg, smem,
                                   TOOLCHAIN_DRYRUN_MAX_THREADS);
}

void ggml_metal_encoder_memory_barrier(ggml_metal_encoder_t encoder) {
    (void) encoder;
}

void ggml_metal_encoder_end_encoding(ggml_metal_encoder_t encoder) {
    (void) encoder;
}

ggml_metal_library_t ggml_metal_library_init(ggml_metal_device_t dev) {
    return toolchain_library_init(dev);
}

ggml_metal_library_t ggml_metal_library_init_from_source(ggml_metal_device_t dev, const char * source, bool verbose) {
    (void) source; (void) verbose;
    return toolchain_library_init(dev);
}

void ggml_metal_library_free(ggml_metal_library_t lib) {
    toolchain_library_free(lib);
}

ggml_metal_device_t ggml_metal_library_get_device(ggml_metal_library_t lib) {
    return lib->dev;
}

struct ggml_metal_pipeline_with_params ggml_metal_library_get_pipeline(ggml_metal_library_t lib, const char * name) {
    struct ggml_metal_pipeline_with_params res = {};
    res.pipeline = ggml_metal_pipelines_get(lib->pipelines, name);
    return res;
}

struct ggml_metal_pipeline_with_params ggml_metal_library_compile_pipeline(ggml_metal_library_t lib, const char * base, const char * name, ggml_metal_cv_t cv) {
    (void) cv;
    struct ggml_metal_pipeline_with_params res = {};
    res.pipeline = ggml_metal_pipelines_get(lib->pipelines, name);
    if (res.pipeline) {
        return res;
    }
    toolchain_dryrun_note_compile(base, name);
    res.pipeline = ggml_metal_pipeline_init();
    res.pipeline->base = base;
    res.pipeline->name = name;
    ggml_metal_pipelines_add(lib->pipelines, name, res.pipeline);
    return res;
}

ggml_metal_rsets_t ggml_metal_rsets_init(ggml_metal_device_t dev) {
    (void) dev;
    return new ggml_metal_rsets();
}

void ggml_metal_rsets_free(ggml_metal_rsets_t rsets) {
    delete rsets;
}

const char * ggml_metal_device_id_token(enum ggml_metal_device_id id) {
    (void) id;
    return "";
}

void ggml_metal_event_encode_signal(ggml_metal_event_t ev, ggml_metal_cmd_buf_t cmd_buf) {
    (void) cmd_buf;
    ev->value++;
}

void ggml_metal_event_encode_wait  (ggml_metal_event_t ev, ggml_metal_cmd_buf_t cmd_buf) {
    (void) ev; (void) cmd_buf;
}

ggml_metal_device_t ggml_metal_device_init(int device, int n_devices) {
    (void) n_devices;
    return toolchain_device_init(device);
}

void ggml_metal_device_free(ggml_metal_device_t dev) {
#if TOOLCHAIN_TREE_HAS_FUSION_H
    ggml_metal_fusion_info_free(dev->finfo);
#endif
    toolchain_library_free(dev->library);
    free(dev);
}

void * ggml_metal_device_get_obj  (ggml_metal_device_t dev) {
    return dev;
}

void * ggml_metal_device_get_queue(ggml_metal_device_t dev) {
    return dev;
}

ggml_metal_library_t ggml_metal_device_get_library(ggml_metal_device_t dev) {
    return dev->library;
}

void ggml_metal_device_rsets_add(ggml_metal_device_t dev, ggml_metal_rset_t rset) {
    (void) dev; (void) rset;
}

void ggml_metal_device_rsets_rm (ggml_metal_device_t dev, ggml_metal_rset_t rset) {
    (void) dev; (void) rset;
}

void ggml_metal_device_rsets_keep_alive(ggml_metal_device_t dev) {
    (void) dev;
}

ggml_metal_event_t ggml_metal_device_event_init(ggml_metal_device_t dev) {
    (void) dev;
    return new ggml_metal_event();
}

void ggml_metal_device_event_free(ggml_metal_device_t dev, ggml_metal_event_t ev) {
    (void) dev;
    delete ev;
}

void ggml_metal_device_event_synchronize(ggml_metal_device_t dev, ggml_metal_event_t ev) {
    (void) dev; (void) ev;
}

void ggml_metal_device_get_memory(ggml_metal_device_t dev, size_t * free, size_t * total) {
    *total = dev->props.max_working_set_size;
    *free = *total;
}

const struct ggml_metal_device_props * ggml_metal_device_get_props(ggml_metal_device_t dev) {
    return &dev->props;
}

struct ggml_metal_fusion_info * ggml_metal_device_get_fusion_info(ggml_metal_device_t dev) {
    return dev->finfo;
}

ggml_metal_buffer_t ggml_metal_buffer_init(ggml_metal_device_t dev, size_t size, bool shared) {
    (void) dev;
    const size_t n = size ? size : 1;
    void * base = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) {
        GGML_LOG_ERROR("%s: error: cannot reserve %zu bytes of address space\n", __func__, n);
        return NULL;
    }
    auto * buf = new ggml_metal_buffer{base, n, shared, true};
    return buf;
}

ggml_metal_buffer_t ggml_metal_buffer_map (ggml_metal_device_t dev, void * ptr, size_t size, size_t max_tensor_size) {
    (void) dev; (void) max_tensor_size;
    return new ggml_metal_buffer{ptr, size, true, false};
}

void   ggml_metal_buffer_free     (ggml_metal_buffer_t buf) {
    if (buf->owned) {
        munmap(buf->base, buf->size);
    }
    delete buf;
}

void * ggml_metal_buffer_get_base (ggml_metal_buffer_t buf) {
    return buf->base;
}

bool   ggml_metal_buffer_is_shared(ggml_metal_buffer_t buf) {
    return buf->shared;
}

void   ggml_metal_buffer_memset_tensor(ggml_metal_buffer_t buf, struct ggml_tensor * tensor, uint8_t value, size_t offset, size_t size) {
    (void) buf;
    memset((char *) tensor->data + offset, value, size);
}

void   ggml_metal_buffer_set_tensor   (ggml_metal_buffer_t buf, struct ggml_tensor * tensor, const void * data, size_t offset, size_t size) {
    (void) buf;
    toolchain_copy_in(tensor, data, offset, size);
}

void   ggml_metal_buffer_get_tensor   (ggml_metal_buffer_t buf, const struct ggml_tensor * tensor, void * data, size_t offset, size_t size) {
    (void) buf;
    toolchain_copy_out(tensor, data, offset, size);
}

bool   ggml_metal_buffer_cpy_tensor   (ggml_metal_buffer_t buf, const struct ggml_tensor * src, struct ggml_tensor * dst) {
    (void) buf; (void) src; (void) dst;
    return false;
}

void   ggml_metal_buffer_clear        (ggml_metal_buffer_t buf, uint8_t value) {
    (void) buf; (void) value;
}

struct ggml_metal_buffer_id ggml_metal_buffer_get_id(ggml_metal_buffer_t buf, const struct ggml_tensor * t) {
    struct ggml_metal_buffer_id res = { nullptr, 0 };
    const int64_t ioffs = (int64_t) t->data - (int64_t) buf->base;
    if (ioffs >= 0 && ioffs + (int64_t) ggml_nbytes(t) <= (int64_t) buf->size) {
        res.metal = buf->base;
        res.offs = (size_t) ioffs;
        return res;
    }
    GGML_LOG_ERROR("%s: error: tensor '%s' buffer is nil\n", __func__, t->name);
    return res;
}

ggml_metal_t ggml_metal_init(ggml_metal_device_t dev) {
    auto * ctx = static_cast<ggml_metal_t>(calloc(1, sizeof(struct ggml_metal)));
    ctx->dev = dev;
    ctx->lib = dev->library;
    ctx->ev_cpy = new ggml_metal_event();
    ctx->finfo = dev->finfo;
    ctx->use_fusion = true;  // the .m's default (GGML_METAL_FUSION_DISABLE unset; trees before fusion.h)
    ctx->use_concurrency = true;  // the .m's default (GGML_METAL_CONCURRENCY_DISABLE unset)
    ctx->debug_graph = 0;
    snprintf(ctx->name, sizeof(ctx->name), "%s", dev->props.name);
    return ctx;
}

void ggml_metal_free(ggml_metal_t ctx) {
    delete ctx->ev_cpy;
    free(ctx);
}

const char * ggml_metal_get_name(ggml_metal_t ctx) {
    return ctx->name;
}

void ggml_metal_synchronize(ggml_metal_t ctx) {
    (void) ctx;
}

// nothing is queued: the same copies as a buffer's (a stand-in buffer is host memory)
void ggml_metal_set_tensor_async(ggml_metal_t ctx, struct ggml_tensor * tensor, const void * data, size_t offset, size_t size) {
    (void) ctx;
    toolchain_copy_in(tensor, data, offset, size);
}

void ggml_metal_get_tensor_async(ggml_metal_t ctx, const struct ggml_tensor * tensor, void * data, size_t offset, size_t size) {
    (void) ctx;
    toolchain_copy_out(tensor, data, offset, size);
}

bool ggml_metal_cpy_tensor_async(ggml_metal_t ctx_src, ggml_metal_t ctx_dst, const struct ggml_tensor * src, struct ggml_tensor * dst) {
    (void) ctx_src; (void) ctx_dst; (void) src; (void) dst;
    return false;
}

enum ggml_status ggml_metal_graph_compute (ggml_metal_t ctx, struct ggml_cgraph * gf) {
    if (gf->n_nodes == 0) {
        return GGML_STATUS_SUCCESS;
    }
    // the .m's encode loop, single command buffer (n_cb = 0): every node, in order
    ggml_metal_op_t ctx_op = TOOLCHAIN_OP_INIT(ctx, gf);
    for (int idx = 0; idx < ggml_metal_op_n_nodes(ctx_op); ++idx) {
        const int res = ggml_metal_op_encode(ctx_op, idx);
        if (res == 0) {
            break;
        }
        idx += res - 1;
    }
    ggml_metal_op_free(ctx_op);
    return GGML_STATUS_SUCCESS;
}

void             ggml_metal_graph_optimize(ggml_metal_t ctx, struct ggml_cgraph * gf) {
    (void) ctx;
    ggml_graph_optimize(gf);
}

void ggml_metal_event_record(ggml_metal_t ctx, ggml_metal_event_t ev) {
    (void) ctx;
    ev->value++;
}

void ggml_metal_event_wait  (ggml_metal_t ctx, ggml_metal_event_t ev) {
    (void) ctx; (void) ev;
}

ggml_metal_event_t ggml_metal_get_ev_cpy(ggml_metal_t ctx) {
    return ctx->ev_cpy;
}

void ggml_metal_set_n_cb            (ggml_metal_t ctx, int n_cb) {
    ctx->n_cb = n_cb;
}

void ggml_metal_set_abort_callback  (ggml_metal_t ctx, ggml_abort_callback abort_callback, void * user_data) {
    ctx->abort_callback = abort_callback;
    ctx->abort_callback_data = user_data;
}

bool ggml_metal_supports_family     (ggml_metal_t ctx, int family) {
#if TOOLCHAIN_PROPS_HAS_gpu_family
    return ctx->dev->props.gpu_family >= family;
#else
    (void) ctx; (void) family;
    return false;  // the props have no family before gpu_family (listed as modelled by default)
#endif
}

void ggml_metal_capture_next_compute(ggml_metal_t ctx) {
    (void) ctx;
}

}  // extern "C"
