# The fuzz test (label fuzz): scripts/fuzz.sh builds the libFuzzer targets with clang in their own
# directory (fuzz/ under this build tree) and runs each on its seed corpus. Skipped (exit 77) where
# clang cannot link a libFuzzer target (Note [Fuzz skip] in scripts/fuzz.sh).
# Note [Fuzz budget]: CI has 2 cores and the whole suite must stay well under 20 minutes. One test
# runs the 6 targets 2 at a time for MC_FUZZ_SECONDS each (45 s: 3 rounds, about 2.5 minutes) after a
# clang build of about 2 minutes with -j2 (incremental afterwards). It is RUN_SERIAL: two fuzzers
# keep both cores busy, which would starve the timing-sensitive tests (MPI watchdogs, signals).
set(MC_FUZZ_SECONDS 45 CACHE STRING "seconds each fuzz target runs in the ctest fuzz test")
add_test(NAME fuzz
         COMMAND bash ${CMAKE_SOURCE_DIR}/scripts/fuzz.sh --seconds ${MC_FUZZ_SECONDS} --jobs 2
                 --build-dir ${CMAKE_BINARY_DIR}/fuzz)
set_tests_properties(fuzz PROPERTIES LABELS fuzz TIMEOUT 1200 SKIP_RETURN_CODE 77 RUN_SERIAL TRUE)
