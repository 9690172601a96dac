# Writes the build's git commit and dirty flag into a source file, on every build, touching
# it only when the content changes. Usage: cmake -DSOURCE_DIR=.. -DOUTPUT=.. -DVERSION=.. -P
execute_process(COMMAND git -C "${SOURCE_DIR}" rev-parse HEAD
                OUTPUT_VARIABLE MOELAB_GIT_COMMIT OUTPUT_STRIP_TRAILING_WHITESPACE
                RESULT_VARIABLE git_result ERROR_QUIET)
if(NOT git_result EQUAL 0)
  set(MOELAB_GIT_COMMIT "unknown")
endif()
execute_process(COMMAND git -C "${SOURCE_DIR}" status --porcelain --untracked-files=no
                OUTPUT_VARIABLE git_status RESULT_VARIABLE git_result ERROR_QUIET)
if(git_result EQUAL 0 AND git_status STREQUAL "")
  set(MOELAB_GIT_DIRTY false)
else()
  set(MOELAB_GIT_DIRTY true)
endif()
set(MOELAB_VERSION "${VERSION}")
configure_file("${SOURCE_DIR}/harness/core/build_info.cpp.in" "${OUTPUT}" @ONLY)
