// The profiles file both native programs read (the oracle probe, the dry run), as written by
// toolchain.oracle.probe.profiles_file: one profile per line,
// `name<TAB>description<TAB>field=value;field=value…`, fields of struct ggml_metal_device_props.
// Header-only: each program has its own struct ggml_metal_device (its toolchain_device.h).
#pragma once

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

struct ggml_metal_device;

// Generated per tree (toolchain_oracle_props.c, by toolchain.oracle.probe.props_setter): set one
// props field by name; 0 if this tree's props struct has no such field.
extern "C" int toolchain_oracle_set_prop(struct ggml_metal_device * dev, const char * key, const char * value);

struct toolchain_profile {
    std::string name;
    std::string desc;
    std::string props;  // field=value;field=value… of struct ggml_metal_device_props
};

// Append the profiles of the file at `path` to `out`, in order; false (said on stderr after
// "<program>: ") when the file cannot be read or a line is malformed.
inline bool toolchain_read_profiles(const char * program, const char * path, std::vector<toolchain_profile> & out) {
    std::ifstream in(path);
    if (!in) {
        std::fprintf(stderr, "%s: cannot read profiles file %s\n", program, path);
        return false;
    }
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') {
            continue;
        }
        std::istringstream fields(line);
        toolchain_profile p;
        if (!std::getline(fields, p.name, '\t') || !std::getline(fields, p.desc, '\t')) {
            std::fprintf(stderr, "%s: malformed profile line: %s\n", program, line.c_str());
            return false;
        }
        std::getline(fields, p.props);
        out.push_back(p);
    }
    return true;
}

// Set every field=value of `props` on `dev`; false at the first field this tree's props struct
// lacks (then `unknown` names it).
inline bool toolchain_set_props(struct ggml_metal_device * dev, const std::string & props, std::string & unknown) {
    std::istringstream kvs(props);
    std::string kv;
    while (std::getline(kvs, kv, ';')) {
        if (kv.empty()) {
            continue;
        }
        const size_t eq = kv.find('=');
        const std::string key = kv.substr(0, eq);
        const std::string value = eq == std::string::npos ? "" : kv.substr(eq + 1);
        if (!toolchain_oracle_set_prop(dev, key.c_str(), value.c_str())) {
            unknown = key;
            return false;
        }
    }
    return true;
}
