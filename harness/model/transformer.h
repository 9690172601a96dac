// The transformer backbone shared by every task: pre-LayerNorm blocks with multi-head
// self-attention (optionally causal) and an FFN that is an MoE layer in the blocks chosen by
// model.moe.layers and a dense GELU MLP elsewhere. Tasks add embeddings and heads.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <vector>

#include "harness/config/config.h"
#include "harness/model/moe_layer.h"

namespace moelab {

// What one block's FFN is: an MoE layer routed by `router`, or, with no router, a dense FFN of
// `dense_hidden` neurons.
struct BlockFfn {
  std::shared_ptr<Router> router;
  int64_t dense_hidden = 0;
};
// Each block's FFN by block index (tasks: from the run's router choice, model.moe.layers and
// its conversion).
using BlockFfnFactory = std::function<BlockFfn(int64_t block)>;

class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(int64_t dim, int64_t heads, double dropout, bool causal);
  torch::Tensor forward(const torch::Tensor& x);  // [B, L, D] -> [B, L, D]

 private:
  int64_t heads_;
  bool causal_;
  double dropout_;  // on the attention probabilities while training
  torch::nn::Linear qkv_{nullptr}, proj_{nullptr};
};
TORCH_MODULE(Attention);

class BlockImpl : public torch::nn::Module {
 public:
  BlockImpl(const ModelConfig& model, bool causal, BlockFfn ffn);
  torch::Tensor forward(const torch::Tensor& x, const RouteContext& ctx);  // [B, L, D]
  MoELayer moe() const { return moe_; }  // empty holder in dense blocks
  torch::nn::Sequential dense_ffn() const { return dense_; }  // empty holder in MoE blocks
  // While set, every forward appends the FFN's input [B*L, D] (detached) to *sink.
  void capture_ffn_inputs(std::vector<torch::Tensor>* sink) { capture_ = sink; }

 private:
  std::vector<torch::Tensor>* capture_ = nullptr;
  torch::nn::LayerNorm norm_attn_{nullptr}, norm_ffn_{nullptr};
  Attention attention_{nullptr};
  MoELayer moe_{nullptr};
  torch::nn::Sequential dense_{nullptr};
  int64_t ffn_hidden_ = 0;  // the dense FFN's hidden width (0 in MoE blocks)
  torch::nn::Dropout dropout_{nullptr};
};
TORCH_MODULE(Block);

class TransformerImpl : public torch::nn::Module {
 public:
  // model.depth blocks, block i's FFN from ffns(i).
  TransformerImpl(const ModelConfig& model, const BlockFfnFactory& ffns, bool causal);

  // x: [B, L, D] embeddings -> [B, L, D] final-normalised states. ctx.layer is set per block.
  torch::Tensor forward(const torch::Tensor& x, RouteContext ctx);

  std::vector<MoELayer> moe_layers() const;
  const std::vector<Block>& blocks() const { return blocks_; }

 private:
  std::vector<Block> blocks_;
  torch::nn::LayerNorm final_norm_{nullptr};
  bool causal_;
};
TORCH_MODULE(Transformer);

}  // namespace moelab
