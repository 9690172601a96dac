// What an exception says, for users: LibTorch's c10::Error appends a C++ backtrace to what();
// this gives its message without it (and what() for any other exception).
#pragma once

#include <exception>
#include <string>

namespace moelab {

std::string exception_text(const std::exception& e);

}  // namespace moelab
