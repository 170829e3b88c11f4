{
  "targets": [
    {
      "target_name": "airlock_native",
      "sources": ["src/airlock_native.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    }
  ]
}
