// The Metal oracle probe: the tree's own test-backend-ops (its main renamed by -Dmain=...), with one
// extra ggml backend registered first, "MTL", holding one device per oracle profile whose
// supports_op is the tree's ggml_metal_device_supports_op, cut out and compiled on this machine.
//
//   toolchain-metal-oracle --profiles FILE <test-backend-ops arguments…>
//
// FILE: one profile per line, `name<TAB>description<TAB>field=value;field=value…`, fields of
// struct ggml_metal_device_props. Support mode only builds each case's graph and asks
// supports_op: nothing is allocated, nothing runs on a device.

#include "ggml-backend-impl.h"
#include "toolchain_device.h"
#include "toolchain_profiles.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

extern "C" bool ggml_metal_device_supports_op(ggml_metal_device_t dev, const struct ggml_tensor * op);

int toolchain_tbo_main(int argc, char ** argv);

namespace {

struct oracle_device {
    std::string name;
    std::string desc;
    ggml_metal_device mdev{};
    ggml_backend_device gdev{};
};

std::vector<std::unique_ptr<oracle_device>> g_devices;
ggml_backend_reg g_reg{};
unsigned char g_guid[16] = {'t', 'o', 'o', 'l', 'c', 'h', 'a', 'i', 'n', '-', 'o', 'r', 'a', 'c', 'l', 'e'};

oracle_device * dev_of(ggml_backend_dev_t dev) { return static_cast<oracle_device *>(dev->context); }

const char * dev_name(ggml_backend_dev_t dev) { return dev_of(dev)->name.c_str(); }
const char * dev_desc(ggml_backend_dev_t dev) { return dev_of(dev)->desc.c_str(); }
void dev_memory(ggml_backend_dev_t dev, size_t * free, size_t * total) {
    *total = dev_of(dev)->mdev.props.max_working_set_size;
    *free = *total;
}
enum ggml_backend_dev_type dev_type(ggml_backend_dev_t) { return GGML_BACKEND_DEVICE_TYPE_GPU; }
void dev_props(ggml_backend_dev_t dev, struct ggml_backend_dev_props * props) {
    props->name = dev_name(dev);
    props->description = dev_desc(dev);
    props->type = GGML_BACKEND_DEVICE_TYPE_GPU;
    dev_memory(dev, &props->memory_free, &props->memory_total);
}
bool dev_supports_op(ggml_backend_dev_t dev, const struct ggml_tensor * op) {
    return ggml_metal_device_supports_op(&dev_of(dev)->mdev, op);
}
bool dev_supports_buft(ggml_backend_dev_t, ggml_backend_buffer_type_t) { return false; }
bool dev_offload_op(ggml_backend_dev_t, const struct ggml_tensor *) { return false; }

const char * backend_name(ggml_backend_t backend) { return dev_name(backend->device); }
void backend_free(ggml_backend_t backend) { delete backend; }

ggml_backend_t dev_init(ggml_backend_dev_t dev, const char *) {
    auto * backend = new ggml_backend{};
    backend->guid = &g_guid;
    backend->iface.get_name = backend_name;
    backend->iface.free = backend_free;
    backend->device = dev;
    backend->context = nullptr;
    return backend;
}

const char * reg_name(ggml_backend_reg_t) { return "MTL"; }
size_t reg_count(ggml_backend_reg_t) { return g_devices.size(); }
ggml_backend_dev_t reg_device(ggml_backend_reg_t, size_t i) { return &g_devices.at(i)->gdev; }
void * reg_proc(ggml_backend_reg_t, const char *) { return nullptr; }

bool load_profiles(const char * path) {
    std::vector<toolchain_profile> profiles;
    if (!toolchain_read_profiles("toolchain-metal-oracle", path, profiles)) {
        return false;
    }
    for (const toolchain_profile & p : profiles) {
        auto dev = std::make_unique<oracle_device>();
        dev->name = p.name;
        dev->desc = p.desc;
        std::string unknown;
        if (!toolchain_set_props(&dev->mdev, p.props, unknown)) {
            std::fprintf(stderr, "toolchain-metal-oracle: profile %s: no props field %s in this tree\n",
                         p.name.c_str(), unknown.c_str());
            return false;
        }
        g_devices.push_back(std::move(dev));
    }
    return true;
}

}  // namespace

int main(int argc, char ** argv) {
    if (argc < 3 || std::strcmp(argv[1], "--profiles") != 0) {
        std::fprintf(stderr, "usage: %s --profiles FILE <test-backend-ops arguments>\n", argv[0]);
        return 2;
    }
    if (!load_profiles(argv[2])) {
        return 2;
    }
    for (auto & dev : g_devices) {
        dev->gdev.iface.get_name = dev_name;
        dev->gdev.iface.get_description = dev_desc;
        dev->gdev.iface.get_memory = dev_memory;
        dev->gdev.iface.get_type = dev_type;
        dev->gdev.iface.get_props = dev_props;
        dev->gdev.iface.init_backend = dev_init;
        dev->gdev.iface.supports_op = dev_supports_op;
        dev->gdev.iface.supports_buft = dev_supports_buft;
        dev->gdev.iface.offload_op = dev_offload_op;
        dev->gdev.reg = &g_reg;
        dev->gdev.context = dev.get();
    }
    g_reg.api_version = GGML_BACKEND_API_VERSION;
    g_reg.iface.get_name = reg_name;
    g_reg.iface.get_device_count = reg_count;
    g_reg.iface.get_device = reg_device;
    g_reg.iface.get_proc_address = reg_proc;
    g_reg.context = nullptr;
    ggml_backend_register(&g_reg);

    std::vector<char *> args;
    args.push_back(argv[0]);
    for (int i = 3; i < argc; ++i) {
        args.push_back(argv[i]);
    }
    args.push_back(nullptr);
    return toolchain_tbo_main(static_cast<int>(args.size()) - 1, args.data());
}
