// Two-stage StableMoE routing.
#include "routers/stablemoe.h"

#include "routers/losses.h"
#include "routers/topk.h"

namespace moelab {

void StableMoeOptions::check(const RouterShape& shape) const { check_k(k, shape); }

StableMoeRouter::StableMoeRouter(const StableMoeOptions& options, const RouterShape& shape)
    : options_(options) {
  auto centroids = torch::empty({shape.experts, shape.dim});
  torch::nn::init::orthogonal_(centroids, 0.32);
  centroids_ = register_parameter("centroids", centroids);
  if (options.vocab > 0) {
    distill_embedding_ = register_module("distill", torch::nn::Embedding(options.vocab, shape.experts));
  } else {
    distill_linear_ = register_module("distill", torch::nn::Linear(shape.dim, shape.experts));
  }
}

bool StableMoeRouter::in_stage1() const {
  return steps_done_ < options_.stage1_steps;
}

void StableMoeRouter::on_step_end(int64_t /*step*/) { ++steps_done_; }

torch::Tensor StableMoeRouter::distilled_logits(const torch::Tensor& x, const RouteContext& ctx) {
  if (distill_embedding_) {
    if (!ctx.token_ids.defined()) throw Error("stablemoe: vocab > 0 needs a task with token ids");
    return distill_embedding_(ctx.token_ids.reshape({-1}).remainder(options_.vocab));
  }
  return distill_linear_(x.detach().to(torch::kFloat));
}

RouteResult StableMoeRouter::route(const torch::Tensor& x, const RouteContext& ctx) {
  auto unit = torch::nn::functional::normalize(
      centroids_, torch::nn::functional::NormalizeFuncOptions().dim(-1));  // [E, D]
  auto scores = torch::matmul(x.to(torch::kFloat), unit.t());               // s [T, E]
  auto distilled = distilled_logits(x, ctx);                                // [T, E]
  const bool stage1 = in_stage1();
  torch::Tensor indices;  // [T, k]
  if (stage1) {
    indices = std::get<1>(torch::topk(scores, options_.k, -1));
  } else {
    indices = std::get<1>(torch::topk(distilled.detach(), options_.k, -1));
  }
  auto chosen = scores.gather(1, indices);  // [T, k]
  // Top-1 gates are sigmoid(s) as in the paper; with k > 1 a softmax over the chosen scores.
  auto gates = options_.k == 1 ? torch::sigmoid(chosen) : torch::softmax(chosen, -1);
  RouteResult result = RouteResult::from_topk(indices, gates);
  result.logits = scores;
  result.probs = torch::softmax(scores, -1);
  if (stage1 && ctx.training) {
    auto balance_probs = torch::softmax(scores / options_.balance_temperature, -1);
    add_token_choice_losses(result, scores, balance_probs, options_.aux_coef, 0.0, ctx);
    if (options_.distill_coef > 0) {
      auto target = scores.detach().argmax(-1);
      result.aux_losses.emplace_back(
          "distill", options_.distill_coef * torch::nn::functional::cross_entropy(
                                                 real_rows(distilled, ctx), real_rows(target, ctx)));
    }
  }
  result.metrics.emplace_back("stage1", torch::full({}, stage1 ? 1.0 : 0.0));
  return result;
}

}  // namespace moelab
