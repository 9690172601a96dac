// `aux_loss`: top-k softmax routing trained with the Switch load-balancing loss (weight
// aux_coef, default 0.01) and the ST-MoE router z-loss (z_coef, default 0.001): the usual
// SMoE baseline recipe. Same decision as `topk`; only the loss defaults differ.
#pragma once

#include "routers/topk.h"

namespace moelab {

struct AuxLossOptions : TopKOptions {
  AuxLossOptions() {
    aux_coef = 0.01;
    z_coef = 0.001;
  }
};

class AuxLossRouter : public TopKRouter {
 public:
  using Options = AuxLossOptions;
  AuxLossRouter(const AuxLossOptions& options, const RouterShape& shape)
      : TopKRouter(options, shape) {}
};

}  // namespace moelab
