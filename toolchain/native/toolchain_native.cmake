# What the toolchain's native programs (oracle/native: the supports_op probe, dryrun/native: the
# Metal dry run) share, included by both CMakeLists.txt, built by toolchain.builder.native:
#   -DLLAMA_TREE=<checked-out tree>  -DTOOLCHAIN_GENERATED=<dir with the oracle's cut and props setter>
# ggml comes from that same tree (static, no backends: only ggml-base and the registry), so
# headers, libggml-base and the cut-out code always match.

set(LLAMA_TREE "" CACHE PATH "llama.cpp tree to take ggml, supports_op and test-backend-ops from")
set(TOOLCHAIN_GENERATED "" CACHE PATH "directory holding the generated sources")
if(NOT EXISTS "${LLAMA_TREE}/ggml/CMakeLists.txt" OR NOT EXISTS "${TOOLCHAIN_GENERATED}/toolchain_oracle_props.c")
    message(FATAL_ERROR "LLAMA_TREE and TOOLCHAIN_GENERATED must be set")
endif()
set(TOOLCHAIN_NATIVE_DIR "${CMAKE_CURRENT_LIST_DIR}")

set(CMAKE_CXX_STANDARD 17)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
set(BUILD_SHARED_LIBS OFF CACHE BOOL "" FORCE)
foreach(opt GGML_CPU GGML_METAL GGML_BLAS GGML_CUDA GGML_VULKAN GGML_HIP GGML_SYCL GGML_OPENCL GGML_RPC
            GGML_WEBGPU GGML_CANN GGML_MUSA GGML_ZDNN GGML_OPENMP GGML_CCACHE GGML_NATIVE GGML_BACKEND_DL
            GGML_BUILD_TESTS GGML_BUILD_EXAMPLES GGML_LLAMAFILE)
    set(${opt} OFF CACHE BOOL "" FORCE)
endforeach()
add_subdirectory("${LLAMA_TREE}/ggml" ggml EXCLUDE_FROM_ALL)
# Our programs ask ggml to build graphs and answer supports_op, never to compute: ggml at -O0
# (after the build type's -O3 on the command line, so it wins) compiles in a third of the time
# (ggml-quants.c: 5.2 s -> 0.7 s), three probe builds and a dry-run build per cold run.
foreach(lib ggml-base ggml)
    if(TARGET ${lib})
        target_compile_options(${lib} PRIVATE -O0)
    endif()
endforeach()

# toolchain_program(<target> <our sources…>): our sources, the generated props setter and cut
# supports_op (C), and the tree's test-backend-ops, whose main becomes toolchain_tbo_main, called
# after the program has registered its backend. Support mode only builds graphs: -O0 keeps this
# 12k-line file's compile short. The program's own folder comes first on the include path (its
# toolchain_device.h defines the device struct the cut supports_op reads), then this one, the
# generated sources and the tree's ggml.
function(toolchain_program target)
    add_executable(${target}
        ${ARGN}
        "${TOOLCHAIN_GENERATED}/toolchain_oracle_props.c"
        "${TOOLCHAIN_GENERATED}/toolchain_oracle_cut.c"
        "${LLAMA_TREE}/tests/test-backend-ops.cpp")
    set_source_files_properties("${LLAMA_TREE}/tests/test-backend-ops.cpp" PROPERTIES
        COMPILE_DEFINITIONS "main=toolchain_tbo_main"
        COMPILE_OPTIONS "-O0")
    target_include_directories(${target} PRIVATE
        "${CMAKE_CURRENT_SOURCE_DIR}"
        "${TOOLCHAIN_NATIVE_DIR}"
        "${TOOLCHAIN_GENERATED}"
        "${LLAMA_TREE}/ggml/src"
        "${LLAMA_TREE}/ggml/src/ggml-metal"
        "${LLAMA_TREE}/ggml/include")
    target_link_libraries(${target} PRIVATE ggml)
endfunction()
