{
  "targets": [
    {
      "target_name": "jazzer_fuzzer",
      "sources": [
        "src/addon.cpp",
        "src/fuzzing_async.cpp",
        "src/fuzzing_sync.cpp",
        "src/utils.cpp",
        "src/shared/callbacks.cpp",
        "src/shared/coverage.cpp",
        "src/shared/sanitizer_symbols.cpp",
        "src/shared/tracing.cpp"
      ],
      "include_dirs": ["<(module_root_dir)/../../../node_modules/node-addon-api", "src"],
      "defines": ["NAPI_VERSION=4", "NAPI_CPP_EXCEPTIONS"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-frtti", "-O2", "-fPIC"],
      "libraries": ["-Wl,--whole-archive", "<(libfuzzer)", "-Wl,--no-whole-archive"]
    }
  ]
}
