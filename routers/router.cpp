// Shared helpers of the router interface.
#include "routers/router.h"

namespace moelab {

RouteResult RouteResult::from_topk(const torch::Tensor& indices, const torch::Tensor& weights) {
  const int64_t tokens = indices.size(0);
  const int64_t k = indices.size(1);
  RouteResult result;
  result.token = torch::arange(tokens, indices.options()).repeat_interleave(k);  // [T*k]
  result.expert = indices.reshape({-1});                                         // [T*k]
  result.weight = weights.reshape({-1});                                         // [T*k]
  result.priority = result.weight.detach();
  return result;
}

}  // namespace moelab
