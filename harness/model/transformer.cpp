// Transformer backbone with MoE FFN blocks.
#include "harness/model/transformer.h"

#include "harness/model/attention.h"
#include "harness/model/flops.h"
#include "harness/model/init_streams.h"

namespace moelab {

AttentionImpl::AttentionImpl(int64_t dim, int64_t heads, double dropout, bool causal)
    : heads_(heads), causal_(causal), dropout_(dropout) {
  qkv_ = register_module("qkv", torch::nn::Linear(dim, 3 * dim));
  proj_ = register_module("proj", torch::nn::Linear(dim, dim));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x) {
  return proj_(attention(qkv_(x), heads_, causal_, dropout_, is_training()));  // [B, L, D]
}

BlockImpl::BlockImpl(const ModelConfig& model, bool causal, BlockFfn ffn) {
  norm_attn_ = register_module("norm_attn", torch::nn::LayerNorm(
                                                torch::nn::LayerNormOptions({model.dim})));
  norm_ffn_ = register_module("norm_ffn", torch::nn::LayerNorm(
                                              torch::nn::LayerNormOptions({model.dim})));
  attention_ = register_module("attention",
                               Attention(model.dim, model.heads, model.dropout, causal));
  dropout_ = register_module("dropout", torch::nn::Dropout(model.dropout));
  if (ffn.router) {
    moe_ = register_module("moe", MoELayer(model.dim, model.moe, std::move(ffn.router)));
  } else {
    ffn_hidden_ = ffn.dense_hidden;
    dense_ = register_module("ffn", torch::nn::Sequential(
                                        torch::nn::Linear(model.dim, ffn_hidden_),
                                        torch::nn::GELU(),
                                        torch::nn::Linear(ffn_hidden_, model.dim)));
  }
}

torch::Tensor BlockImpl::forward(const torch::Tensor& x, const RouteContext& ctx) {
  if (ctx.record) ctx.record->compute.add("attention", attention_flops(x.size(0), x.size(1), x.size(2)));
  auto h = x + dropout_(attention_(norm_attn_(x)));  // [B, L, D]
  auto normed = norm_ffn_(h);
  if (capture_) capture_->push_back(normed.detach().reshape({-1, normed.size(-1)}));
  torch::Tensor ffn_out;
  if (moe_) {
    const auto shape = normed.sizes().vec();
    RouteContext layer_ctx = ctx;
    layer_ctx.group_size = shape[1];  // one sequence / image per routing group
    ffn_out = moe_(normed.reshape({-1, shape[2]}), layer_ctx).view(shape);  // [B, L, D]
  } else {
    ffn_out = dense_->forward(normed);
    if (ctx.record) ctx.record->compute.add("ffn", ffn_flops(normed.numel() / normed.size(-1), normed.size(-1), ffn_hidden_));
  }
  return h + dropout_(ffn_out);
}

TransformerImpl::TransformerImpl(const ModelConfig& model, const BlockFfnFactory& ffns,
                                 bool causal)
    : causal_(causal) {
  for (int64_t i = 0; i < model.depth; ++i) {
    const std::string name = "block" + std::to_string(i);
    init_stream(name + ".router");
    BlockFfn ffn = ffns(i);
    init_stream(name);  // attention and experts: the same for every router
    blocks_.push_back(register_module(name, Block(model, causal, std::move(ffn))));
  }
  final_norm_ = register_module("final_norm",
                                torch::nn::LayerNorm(torch::nn::LayerNormOptions({model.dim})));
}

torch::Tensor TransformerImpl::forward(const torch::Tensor& x, RouteContext ctx) {
  auto h = x;
  ctx.causal = causal_;
  if (ctx.record) ctx.record->compute.tokens += x.size(0) * x.size(1);  // [B, L, D]
  for (size_t i = 0; i < blocks_.size(); ++i) {
    ctx.layer = static_cast<int64_t>(i);
    h = blocks_[i]->forward(h, ctx);
  }
  return final_norm_(h);
}

std::vector<MoELayer> TransformerImpl::moe_layers() const {
  std::vector<MoELayer> layers;
  for (const auto& block : blocks_) {
    if (block->moe()) layers.push_back(block->moe());
  }
  return layers;
}

}  // namespace moelab
