"""Development tools shared by the tests, the benchmarks, `make run` and `make demo` (never imported by the service)."""
