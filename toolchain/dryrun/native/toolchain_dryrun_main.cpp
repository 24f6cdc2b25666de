// The Metal dry run: the tree's own test-backend-ops (main renamed by -Dmain=...) over the tree's
// real Metal backend (ggml-metal.cpp and the other C++ files, compiled unchanged) on our stand-in
// for its Objective-C layer, one Metal device per profile (a tree whose ggml_metal_device_init takes no
// device index has one device per process: the caller then runs one process per one-profile file).
//
//   toolchain-metal-dryrun --profiles FILE --records FILE [--skip N] [--cases FILE] support <test-backend-ops args…>
//
// test-backend-ops' `support` mode builds each case's graph (built-in cases, or a model's exact ops
// with --test-file; --cases: the same file read by the driver, for a tree whose test-backend-ops
// predates --test-file) and asks the device's supports_op; our hook answers with the backend's own
// answer (the oracle's cut of ggml_metal_device_supports_op) and, when it says yes, encodes the
// case: the tensors get addresses in a stand-in buffer, the graph goes through the backend's
// graph_compute, i.e. the tree's ggml_metal_op_encode. Nothing is computed anywhere.
//
// One JSON line per supports_op call is appended to the records file (seq, device, op, tensors,
// compiled pipelines, dispatches). An encoder abort (GGML_ASSERT/GGML_ABORT) writes its record
// with the message before the process dies; the caller reruns with --skip past it. A record that
// cannot be written (a full disk) ends the process at once with exit status 74 (EX_IOERR) and one
// line naming the file and the errno, so the caller can tell a full disk from a crash of a case.

#include "toolchain_dryrun.h"

#include "ggml-alloc.h"
#include "ggml-backend-impl.h"
#include "ggml-backend.h"
#include "ggml-metal.h"
#include "ggml.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

std::vector<toolchain_profile> g_dryrun_profiles;

int toolchain_tbo_main(int argc, char ** argv);

namespace {

struct dispatch_rec {
    std::string base, name;
    int grid[3];
    int tptg[3];
    size_t smem;
    int max_threads;
};

struct case_rec {
    long seq = 0;
    std::string device;
    std::string tensor;
    bool supported = false;
    bool encoding = false;
    std::string rejected;  // an inner node of the case's graph that supports_op rejects
    std::vector<std::pair<std::string, std::string>> compiled;
    std::vector<dispatch_rec> dispatches;
};

FILE * g_records = nullptr;
const char * g_records_path = "";
constexpr int EXIT_WRITE_FAILED = 74;  // EX_IOERR; toolchain/dryrun/run.py WRITE_FAILED
long g_seq = 0;
long g_skip = 0;
bool g_skipped = false;
case_rec g_case;
std::vector<bool (*)(ggml_backend_dev_t, const ggml_tensor *)> g_orig_supports;
std::vector<ggml_backend_dev_t> g_devs;
std::vector<ggml_backend_t> g_backends;

std::string esc(const std::string & s) {
    std::string out;
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += (char) c;
        } else if (c < 0x20) {
            char b[8];
            snprintf(b, sizeof(b), "\\u%04x", c);
            out += b;
        } else {
            out += (char) c;
        }
    }
    return out;
}

std::string tensor_json(const ggml_tensor * t) {
    std::ostringstream o;
    o << "{\"type\":\"" << ggml_type_name(t->type) << "\",\"ne\":[" << t->ne[0] << "," << t->ne[1] << ","
      << t->ne[2] << "," << t->ne[3] << "],\"nb\":[" << t->nb[0] << "," << t->nb[1] << "," << t->nb[2] << ","
      << t->nb[3] << "]}";
    return o.str();
}

std::string op_json(const ggml_tensor * op) {
    std::ostringstream o;
    o << "\"op\":\"" << esc(ggml_op_desc(op)) << "\",\"out\":" << tensor_json(op) << ",\"srcs\":[";
    bool first = true;
    for (int i = 0; i < GGML_MAX_SRC; ++i) {
        if (!op->src[i]) {
            continue;
        }
        o << (first ? "" : ",") << tensor_json(op->src[i]);
        first = false;
    }
    o << "]";
    return o.str();
}

[[noreturn]] void write_failed() {
    const int err = errno;
    fprintf(stderr, "toolchain-metal-dryrun: cannot write %s: %s (errno %d)\n", g_records_path, strerror(err), err);
    fflush(stderr);
    _Exit(EXIT_WRITE_FAILED);  // no atexit flushes: nothing more is written anywhere
}

void write_record(const char * abort_message) {
    if (!g_records) {
        return;
    }
    std::ostringstream o;
    o << "{\"seq\":" << g_case.seq << ",\"device\":\"" << esc(g_case.device) << "\"," << g_case.tensor
      << ",\"supported\":" << (g_case.supported ? "true" : "false") << ",\"encoded\":" << (g_case.encoding ? "true" : "false")
      << ",\"compiled\":[";
    for (size_t i = 0; i < g_case.compiled.size(); ++i) {
        o << (i ? "," : "") << "[\"" << esc(g_case.compiled[i].first) << "\",\"" << esc(g_case.compiled[i].second) << "\"]";
    }
    o << "],\"dispatches\":[";
    for (size_t i = 0; i < g_case.dispatches.size(); ++i) {
        const dispatch_rec & d = g_case.dispatches[i];
        o << (i ? "," : "") << "[\"" << esc(d.base) << "\",\"" << esc(d.name) << "\"," << d.grid[0] << "," << d.grid[1]
          << "," << d.grid[2] << "," << d.tptg[0] << "," << d.tptg[1] << "," << d.tptg[2] << "," << d.smem << ","
          << d.max_threads << "]";
    }
    o << "]";
    if (!g_case.rejected.empty()) {
        o << ",\"rejected_node\":\"" << esc(g_case.rejected) << "\"";
    }
    if (g_skipped) {
        o << ",\"skipped\":true";
    }
    if (abort_message) {
        o << ",\"abort\":\"" << esc(abort_message) << "\"";
    }
    o << "}\n";
    if (fputs(o.str().c_str(), g_records) == EOF || fflush(g_records) != 0) {
        write_failed();
    }
}

void on_abort(const char * message) {
    // an abort while encoding is the case's verdict; anywhere else it is reported as it is
    if (g_case.encoding) {
        write_record(message);
    }
    fprintf(stderr, "%s\n", message);
}

void collect(ggml_tensor * t, std::vector<ggml_tensor *> & order, std::set<ggml_tensor *> & seen) {
    if (!t || seen.count(t)) {
        return;
    }
    seen.insert(t);
    if (t->view_src) {
        collect(t->view_src, order, seen);
    }
    for (int i = 0; i < GGML_MAX_SRC; ++i) {
        collect(t->src[i], order, seen);
    }
    order.push_back(t);
}

void encode(size_t di, ggml_tensor * op) {
    ggml_backend_dev_t dev = g_devs[di];
    if (!g_backends[di]) {
        g_backends[di] = ggml_backend_dev_init(dev, nullptr);
        GGML_ASSERT(g_backends[di] && "the Metal backend did not initialise on the stand-in");
    }
    std::vector<ggml_tensor *> order;
    std::set<ggml_tensor *> seen;
    collect(op, order, seen);

    ggml_backend_buffer_type_t buft = ggml_backend_dev_buffer_type(dev);
    const size_t align = ggml_backend_buft_get_alignment(buft);
    size_t total = align;
    for (ggml_tensor * t : order) {
        if (!t->view_src && !t->data) {
            total += GGML_PAD(ggml_backend_buft_get_alloc_size(buft, t), align);
        }
    }
    ggml_backend_buffer_t buffer = ggml_backend_buft_alloc_buffer(buft, total);
    GGML_ASSERT(buffer && "the stand-in buffer could not be reserved");
    ggml_tallocr talloc = ggml_tallocr_new(buffer);
    std::vector<ggml_tensor *> placed;
    for (ggml_tensor * t : order) {
        if (t->data) {
            continue;
        }
        if (t->view_src) {
            ggml_backend_view_init(t);
        } else {
            ggml_tallocr_alloc(&talloc, t);
        }
        placed.push_back(t);
    }

    ggml_init_params params = {
        /* .mem_size = */ ggml_graph_overhead_custom(8192, false) + ggml_tensor_overhead(),
        /* .mem_base = */ nullptr,
        /* .no_alloc = */ true,
    };
    ggml_context * ctx = ggml_init(params);
    ggml_cgraph * gf = ggml_new_graph_custom(ctx, 8192, false);
    ggml_build_forward_expand(gf, op);
    g_case.encoding = true;
    ggml_backend_graph_compute(g_backends[di], gf);
    g_case.encoding = false;
    ggml_free(ctx);
    for (ggml_tensor * t : placed) {
        t->buffer = nullptr;
        t->data = nullptr;
    }
    ggml_backend_buffer_free(buffer);
}

std::string inner_node_rejected(size_t di, ggml_tensor * op) {
    std::vector<ggml_tensor *> order;
    std::set<ggml_tensor *> seen;
    collect(op, order, seen);
    for (ggml_tensor * t : order) {
        if (t == op || t->op == GGML_OP_NONE || ggml_is_empty(t)) {
            continue;
        }
        if (!g_orig_supports[di](g_devs[di], t)) {
            return std::string(ggml_op_desc(t)) + " " + ggml_type_name(t->type);
        }
    }
    return "";
}

bool hook_supports_op(ggml_backend_dev_t dev, const ggml_tensor * op) {
    size_t di = 0;
    while (di < g_devs.size() && g_devs[di] != dev) {
        ++di;
    }
    GGML_ASSERT(di < g_devs.size());
    const bool supported = g_orig_supports[di](dev, op);
    g_case = case_rec();
    g_case.seq = g_seq++;
    g_case.device = ggml_backend_dev_name(dev);
    g_case.tensor = op_json(op);
    g_case.supported = supported;
    if (g_case.seq < g_skip) {
        // encoded by an earlier run of the same cases: only say which case this was
        g_skipped = true;
        write_record(nullptr);
        g_skipped = false;
        return supported;
    }
    if (supported) {
        // test mode asks about every node of the case's graph; a Mac's scheduler would not give
        // Metal a node its supports_op rejects, so neither do we (the case is then unsupported)
        std::string rejected = inner_node_rejected(di, const_cast<ggml_tensor *>(op));
        if (!rejected.empty()) {
            g_case.supported = false;
            g_case.rejected = rejected;
        } else {
            encode(di, const_cast<ggml_tensor *>(op));
            g_case.encoding = true;  // recorded as encoded
        }
    }
    write_record(nullptr);
    g_case.encoding = false;
    return supported;
}

// --cases FILE: a tree whose test-backend-ops has no --test-file (before ggml 05523be4, 2026-03-12)
// gets the same cases from the driver: each line in test-backend-ops' own test-file format
//   op type ne0..ne3 n_params params… n_src (type ne0..ne3 nb0..nb3)… name
// becomes the op test-backend-ops' test_generic_op builds from it (a tensor of that op, type and shape
// over sources of those types, shapes and strides, the op_params copied), asked of every device as
// its support mode asks (one supports_op per case and device) and printed as its CSV rows.
struct case_src {
    int type = 0;
    int64_t ne[4] = {1, 1, 1, 1};
    size_t nb[4] = {0, 0, 0, 0};
};

struct case_line {
    int op = 0;
    int type = 0;
    int64_t ne[4] = {1, 1, 1, 1};
    int32_t params[GGML_MAX_OP_PARAMS / sizeof(int32_t)] = {};
    std::vector<case_src> srcs;
    std::string name;
    std::string text;
};

bool read_case(const std::string & line, case_line & c) {
    std::istringstream in(line);
    uint64_t n = 0;
    if (!(in >> c.op >> c.type >> c.ne[0] >> c.ne[1] >> c.ne[2] >> c.ne[3] >> n)) {
        return false;
    }
    for (uint64_t k = 0; k < n; ++k) {
        int32_t v = 0;
        if (!(in >> v)) {
            return false;
        }
        if (k < GGML_MAX_OP_PARAMS / sizeof(int32_t)) {
            c.params[k] = v;
        }
    }
    if (!(in >> n)) {
        return false;
    }
    for (uint64_t k = 0; k < n; ++k) {
        case_src src;
        if (!(in >> src.type >> src.ne[0] >> src.ne[1] >> src.ne[2] >> src.ne[3] >> src.nb[0] >> src.nb[1] >> src.nb[2] >>
              src.nb[3])) {
            return false;
        }
        if (k < GGML_MAX_SRC) {
            c.srcs.push_back(src);
        }
    }
    in >> c.name;
    if (c.name == "-") {
        c.name.clear();
    }
    c.text = line;
    return c.op > GGML_OP_NONE && c.op < GGML_OP_COUNT && c.type >= 0 && c.type < GGML_TYPE_COUNT;
}

ggml_tensor * build_case(ggml_context * ctx, const case_line & c) {
    std::vector<ggml_tensor *> srcs;
    for (const case_src & s : c.srcs) {
        const ggml_type type = (ggml_type) s.type;
        const size_t blck = ggml_blck_size(type);
        const size_t tsize = ggml_type_size(type);
        // test-backend-ops' is_non_contiguous: strides other than the default ones (nb0 = 0: none given)
        const size_t nb1 = tsize * ((size_t) s.ne[0] / blck), nb2 = nb1 * (size_t) s.ne[1], nb3 = nb2 * (size_t) s.ne[2];
        if (s.nb[0] == 0 || (s.nb[0] == tsize && s.nb[1] == nb1 && s.nb[2] == nb2 && s.nb[3] == nb3)) {
            srcs.push_back(ggml_new_tensor_4d(ctx, type, s.ne[0], s.ne[1], s.ne[2], s.ne[3]));
            continue;
        }
        // a strided source: a view of a backing tensor large enough for its strides (test_generic_op)
        size_t total = blck == 1 ? tsize : s.ne[0] * s.nb[0] / blck;
        for (int d = blck == 1 ? 0 : 1; d < 4; ++d) {
            total += (s.ne[d] - 1) * s.nb[d];
        }
        size_t elems = (total * blck + tsize - 1) / tsize;
        elems = (elems + blck - 1) / blck * blck;
        ggml_tensor * backing = ggml_new_tensor_1d(ctx, type, (int64_t) elems);
        ggml_tensor * v = ggml_view_4d(ctx, backing, s.ne[0], s.ne[1], s.ne[2], s.ne[3], s.nb[1], s.nb[2], s.nb[3], 0);
        v->nb[0] = s.nb[0];
        srcs.push_back(v);
    }
    bool inplace = false;
    if (c.op == GGML_OP_SET || c.op == GGML_OP_ACC) {
        inplace = c.params[4] != 0;
    } else if (c.op == GGML_OP_ADD_REL_POS) {
        inplace = c.params[0] != 0;
    }
    ggml_tensor * out = inplace && !srcs.empty() ? ggml_view_tensor(ctx, srcs[0])
                                                 : ggml_new_tensor_4d(ctx, (ggml_type) c.type, c.ne[0], c.ne[1], c.ne[2], c.ne[3]);
    out->op = (ggml_op) c.op;
    for (size_t k = 0; k < srcs.size(); ++k) {
        out->src[k] = srcs[k];
    }
    memcpy(out->op_params, c.params, sizeof(c.params));
    ggml_set_name(out, "out");
    return out;
}

std::string csv_field(const std::string & s) {
    std::string out = "\"";
    for (char ch : s) {
        out += ch == '"' ? std::string("\"\"") : std::string(1, ch);
    }
    return out + "\"";
}

// test-backend-ops support --output csv over the case file; `filter`: its -o (op names, comma-separated)
int run_cases(const char * path, const std::string & filter) {
    std::ifstream f(path);
    if (!f.is_open()) {
        fprintf(stderr, "toolchain-metal-dryrun: cannot read the case file %s\n", path);
        return 2;
    }
    std::vector<case_line> cases;
    std::string line;
    for (long n = 1; std::getline(f, line); ++n) {
        if (line.find_first_not_of(" \t\r") == std::string::npos) {
            continue;
        }
        case_line c;
        if (!read_case(line, c)) {
            fprintf(stderr, "toolchain-metal-dryrun: %s:%ld: not a test-file line\n", path, n);
            return 2;
        }
        cases.push_back(c);
    }
    printf("\"test_mode\",\"backend_name\",\"op_name\",\"op_params\",\"supported\"\n");
    for (size_t di = 0; di < g_devs.size(); ++di) {
        for (const case_line & c : cases) {
            ggml_init_params params = {
                /* .mem_size = */ ggml_tensor_overhead() * (2 * GGML_MAX_SRC + 2),
                /* .mem_base = */ nullptr,
                /* .no_alloc = */ true,
            };
            ggml_context * ctx = ggml_init(params);
            ggml_tensor * out = build_case(ctx, c);
            if (!filter.empty() && ("," + filter + ",").find(std::string(",") + ggml_op_desc(out) + ",") == std::string::npos) {
                ggml_free(ctx);
                continue;
            }
            const bool supported = ggml_backend_dev_supports_op(g_devs[di], out);
            std::string vars = "line=" + c.text;
            printf("%s,%s,%s,%s,%s\n", csv_field("support").c_str(), csv_field(ggml_backend_dev_name(g_devs[di])).c_str(),
                   csv_field(ggml_op_desc(out)).c_str(), csv_field(vars).c_str(), csv_field(supported ? "yes" : "no").c_str());
            fflush(stdout);
            ggml_free(ctx);
        }
    }
    return 0;
}

bool load_profiles(const char * path) {
    return toolchain_read_profiles("toolchain-metal-dryrun", path, g_dryrun_profiles) && !g_dryrun_profiles.empty();
}

}  // namespace

int toolchain_dryrun_single_device() {
    if (g_dryrun_profiles.size() != 1) {
        GGML_ABORT("toolchain-metal-dryrun: this tree's Metal backend has one device per process, the profiles file %zu "
                   "profiles (run one process per profile)", g_dryrun_profiles.size());
    }
    return 0;
}

void toolchain_dryrun_note_compile(const char * base, const char * name) {
    g_case.compiled.emplace_back(base, name);
}

void toolchain_dryrun_note_dispatch(const char * base, const char * name, const int grid[3], const int tptg[3],
                                    size_t threadgroup_memory, int max_threads) {
    dispatch_rec d;
    d.base = base;
    d.name = name;
    for (int i = 0; i < 3; ++i) {
        d.grid[i] = grid[i];
        d.tptg[i] = tptg[i];
    }
    d.smem = threadgroup_memory;
    d.max_threads = max_threads;
    g_case.dispatches.push_back(d);
}

int main(int argc, char ** argv) {
    const char * profiles = nullptr;
    const char * records = nullptr;
    const char * cases = nullptr;
    int i = 1;
    for (; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--profiles") == 0) {
            profiles = argv[i + 1];
        } else if (strcmp(argv[i], "--records") == 0) {
            records = argv[i + 1];
        } else if (strcmp(argv[i], "--skip") == 0) {
            g_skip = atol(argv[i + 1]);
        } else if (strcmp(argv[i], "--cases") == 0) {
            cases = argv[i + 1];
        } else {
            break;
        }
    }
    if (!profiles || !records) {
        fprintf(stderr, "usage: %s --profiles FILE --records FILE [--skip N] [--cases FILE] <test-backend-ops arguments>\n", argv[0]);
        return 2;
    }
    if (!load_profiles(profiles)) {
        return 2;
    }
    g_records_path = records;
    g_records = fopen(records, "a");
    if (!g_records) {
        write_failed();
    }
    char n[32];
    snprintf(n, sizeof(n), "%zu", g_dryrun_profiles.size());
    setenv("GGML_METAL_DEVICES", n, 1);  // ggml-metal.cpp: one virtual device per profile
    ggml_set_abort_callback(on_abort);

    ggml_backend_reg_t reg = ggml_backend_metal_reg();
    for (size_t d = 0; d < ggml_backend_reg_dev_count(reg); ++d) {
        ggml_backend_dev_t dev = ggml_backend_reg_dev_get(reg, d);
        g_devs.push_back(dev);
        g_orig_supports.push_back(dev->iface.supports_op);
        dev->iface.supports_op = hook_supports_op;
    }
    if (g_devs.size() != g_dryrun_profiles.size()) {
        // every profile is a device, or its cases would silently be missing from the records
        fprintf(stderr, "toolchain-metal-dryrun: the Metal backend registered %zu devices for %zu profiles\n",
                g_devs.size(), g_dryrun_profiles.size());
        return 2;
    }
    g_backends.assign(g_devs.size(), nullptr);
    ggml_backend_register(reg);

    if (cases) {
        // the tree's test-backend-ops cannot read a case file: the driver asks its cases itself
        std::string filter;
        for (int k = i; k + 1 < argc; ++k) {
            if (strcmp(argv[k], "-o") == 0) {
                filter = argv[k + 1];
            }
        }
        const int rc = run_cases(cases, filter);
        if (fclose(g_records) != 0) {
            write_failed();
        }
        return rc;
    }
    std::vector<char *> args;
    args.push_back(argv[0]);
    for (; i < argc; ++i) {
        args.push_back(argv[i]);
    }
    args.push_back(nullptr);
    const int rc = toolchain_tbo_main(static_cast<int>(args.size()) - 1, args.data());
    if (fclose(g_records) != 0) {
        write_failed();
    }
    return rc;
}
