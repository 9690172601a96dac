// A small converting run (Fashion-MNIST, 2 blocks of width 16, FFN 32 split into 4 experts of
// 8, dot_moe top-2, an 8-step dense parent) for the conversion tests to override.
#pragma once

namespace moelab::testing {

inline const char* const kConvertRun = R"(name: conv
seed: 3
task: {name: image, train_limit: 512, val_size: 300}
model: {dim: 16, depth: 2, heads: 2, ffn_hidden: 32, moe: {experts: 4, expert_hidden: 8}}
router: {name: dot_moe, k: 2}
train: {steps: 6, batch_size: 32, log_every: 3, warmup_steps: 2}
eval: {max_examples: 200}
convert: {method: random, dense_steps: 8, calibration_tokens: 256}
)";

}  // namespace moelab::testing
