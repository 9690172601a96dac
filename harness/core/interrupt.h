// Clean interruption: the run boundary's SIGINT/SIGTERM handler sets a flag that the training
// loop checks every step and evaluation loops check every batch; they stop by throwing
// InterruptedError, which the run boundary records as 'interrupted' (resumable).
#pragma once

#include <string>

#include "harness/core/error.h"

namespace moelab {

class InterruptedError : public Error {
 public:
  using Error::Error;
};

// Async-signal-safe (a lock-free atomic store).
void request_interrupt();
bool interrupt_requested();
void clear_interrupt_request();

// Throws InterruptedError("interrupted <where>") when an interrupt was requested.
void throw_if_interrupted(const std::string& where);

}  // namespace moelab
