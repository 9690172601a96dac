// Checkpoint files.
#include "harness/train/checkpoint.h"

#include <fmt/format.h>

#include <filesystem>

#include "harness/core/error.h"

namespace moelab {
namespace {

constexpr int64_t kFormatVersion = 1;

int64_t read_int(torch::serialize::InputArchive& archive, const char* key) {
  torch::Tensor value;
  archive.read(key, value);
  return value.item<int64_t>();
}

}  // namespace

std::string checkpoint_path(const RunConfig& config) {
  return checkpoint_path(config.checkpoint_dir, config_hash(config));
}

std::string checkpoint_path(const std::string& checkpoint_dir, const std::string& config_hash) {
  return checkpoint_dir + "/" + config_hash + ".pt";
}

void save_checkpoint(const std::string& path, torch::nn::Module& model,
                     const torch::optim::Optimizer& optimizer, int64_t step) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  if (target.has_parent_path()) fs::create_directories(target.parent_path());
  torch::serialize::OutputArchive archive, model_archive, optimizer_archive;
  model.save(model_archive);
  optimizer.save(optimizer_archive);
  archive.write("model", model_archive);
  archive.write("optimizer", optimizer_archive);
  archive.write("step", torch::tensor(step, torch::kLong));
  archive.write("format", torch::tensor(kFormatVersion, torch::kLong));
  const std::string temporary = path + ".tmp";
  archive.save_to(temporary);
  fs::rename(temporary, target);  // atomic on POSIX: readers see the old or the new file
}

namespace {

// Opens a checkpoint and checks its format; `read` takes what it needs from the archive.
template <class Read>
int64_t read_checkpoint(const std::string& path, Read read) {
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path);
    const int64_t format = read_int(archive, "format");
    if (format != kFormatVersion) {
      throw Error(fmt::format("format {} (this build reads {})", format, kFormatVersion));
    }
    read(archive);
    return read_int(archive, "step");
  } catch (const std::exception& e) {
    throw Error(fmt::format("checkpoint '{}' cannot be loaded: {}", path, e.what()));
  }
}

void load_model(torch::serialize::InputArchive& archive, torch::nn::Module& model) {
  torch::serialize::InputArchive model_archive;
  archive.read("model", model_archive);
  model.load(model_archive);
}

}  // namespace

int64_t load_checkpoint(const std::string& path, torch::nn::Module& model,
                        torch::optim::Optimizer& optimizer) {
  return read_checkpoint(path, [&](torch::serialize::InputArchive& archive) {
    load_model(archive, model);
    torch::serialize::InputArchive optimizer_archive;
    archive.read("optimizer", optimizer_archive);
    optimizer.load(optimizer_archive);
  });
}

int64_t load_model_weights(const std::string& path, torch::nn::Module& model) {
  return read_checkpoint(path,
                         [&](torch::serialize::InputArchive& archive) { load_model(archive, model); });
}

int64_t checkpoint_step(const std::string& path) {
  if (!std::filesystem::exists(path)) return -1;
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path);
    return read_int(archive, "step");
  } catch (const std::exception& e) {
    throw Error(fmt::format("checkpoint '{}' cannot be read: {}", path, e.what()));
  }
}

}  // namespace moelab
