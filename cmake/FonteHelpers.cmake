# Small helpers that keep each folder's CMakeLists.txt a plain list.

# fonte_test(NAME [SOURCES extra.c ...] [LIBS lib ...] [TIMEOUT s])
#   Builds tests/test_NAME.c (plus SOURCES) as a Criterion binary
#   build/bin/test_NAME, linked with LIBS (and fonte_testutil, when the
#   tests folder defines it), and registers it with ctest.
function(fonte_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LIBS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  add_executable(test_${name} test_${name}.c ${T_SOURCES})
  target_link_libraries(test_${name} PRIVATE PkgConfig::CRITERION ${T_LIBS})
  if(TARGET fonte_testutil)
    target_link_libraries(test_${name} PRIVATE fonte_testutil)
  endif()
  target_include_directories(test_${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  # -j1: Criterion's workers share the 2-core machine with the servers
  # the integration tests start; --full-stats prints every assertion.
  add_test(NAME ${name} COMMAND test_${name} --jobs 1)
  set_tests_properties(${name} PROPERTIES TIMEOUT ${T_TIMEOUT})
endfunction()

# fonte_program(NAME SOURCES a.c ... LIBS lib ...)
#   An executable in build/bin/.
function(fonte_program name)
  cmake_parse_arguments(P "" "" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${P_SOURCES})
  target_link_libraries(${name} PRIVATE ${P_LIBS})
endfunction()

# fonte_fuzzer(NAME SOURCES a.c ... LIBS lib ...)
#   A libFuzzer target build/bin/fuzz_NAME (only with FONTE_FUZZ=ON, clang).
function(fonte_fuzzer name)
  cmake_parse_arguments(F "" "" "SOURCES;LIBS" ${ARGN})
  if(NOT FONTE_FUZZ)
    return()
  endif()
  add_executable(fuzz_${name} ${F_SOURCES})
  target_compile_options(fuzz_${name} PRIVATE -fsanitize=fuzzer)
  target_link_options(fuzz_${name} PRIVATE -fsanitize=fuzzer)
  target_link_libraries(fuzz_${name} PRIVATE ${F_LIBS})
endfunction()
