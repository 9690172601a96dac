// Adversarial attacks on images under the L-infinity threat model, evaluated after training like
// the corruptions: FGSM (Goodfellow et al. 2015) and PGD (Madry et al. 2018) with a seeded
// random start and restarts. Pixels live in [0, 1]; every step is projected onto the eps-ball
// around the clean image and onto the pixel range.
//
// The gradient runs through the whole model, router included, by ordinary autograd: through
// the gate values (softmax / sigmoid weights, Sinkhorn iterations, ...) with the discrete
// choice (top-k selection, capacity drops, hashing) held fixed within a step; the next step
// routes the perturbed input afresh. Routers that stop gradients in their own computation
// (documented per router) pass none through those paths.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

namespace moelab {

struct AttackSpec {
  std::string kind;  // fgsm | pgd
  double eps = 0.0;  // radius on [0, 1] pixels
  int64_t steps = 1;
  double step = 0.0;  // step size on [0, 1] pixels
  int64_t restarts = 1;
  bool random_start = false;

  // The split label, sizes in 1/255 units: "fgsm:eps255=2",
  // "pgd:eps255=5:steps=10:step255=1:restarts=1" (":start=zero" without a random start).
  std::string label() const;
  // The config spelling: sizes as n/255 (n whole) where that is the exact value, else the shortest
  // decimal that reads back to it; pgd always with eps and steps, the other keys only where
  // they differ from their defaults ("pgd:eps=8/255:steps=10" for every spelling of that attack).
  std::string canonical() const;
};

// task.attacks: "fgsm:eps=2/255,pgd:eps=5/255:steps=10:step=1/255:restarts=1". Values are
// decimals or fractions; pgd defaults: steps 10, step 2.5 eps / steps, restarts 1, start
// random. The attacks are kept in one order (kind, eps, steps, step, restarts, start) whatever
// order they are written in: each is evaluated on its own, so the order carries no meaning.
struct AttackList {
  std::vector<AttackSpec> attacks;

  static constexpr const char* kTypeName = "attack list";
  // ConfigError naming the attack and the key; an attack listed twice (in any spelling) too.
  static AttackList parse(const std::string& text);
  std::string canonical() const;  // "" when there are none
};
extern const char* const kAttacksHelp;

// The model as the attack sees it: pixels [B, C, H, W] in [0, 1] -> class logits [B, classes].
using PixelLogits = std::function<torch::Tensor(const torch::Tensor& pixels)>;

// Adversarial pixels for `pixels` [B, C, H, W] in [0, 1] with `labels` [B]: the ascent on the
// summed cross-entropy; with restarts, per image the first restart that fools the model (else
// the last). The random start of image i is drawn from a generator keyed by (seed, the label,
// restart, first_index + i), so the result does not depend on the batch layout.
torch::Tensor attack_pixels(const PixelLogits& logits, const torch::Tensor& pixels,
                            const torch::Tensor& labels, const AttackSpec& spec, uint64_t seed,
                            int64_t first_index);

}  // namespace moelab
