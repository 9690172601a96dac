// Checkpoint files.
#include "harness/train/checkpoint.h"

#include <fmt/format.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "harness/core/error.h"
#include "harness/core/exception_text.h"

namespace moelab {
namespace {

constexpr int64_t kFormatVersion = 1;

int64_t read_int(torch::serialize::InputArchive& archive, const char* key) {
  torch::Tensor value;
  archive.read(key, value);
  return value.item<int64_t>();
}

// Writes `data` to `path` + ".tmp", fsyncs it and renames it over `path`; on any failure the
// temporary file is removed and Error names the path and the system's reason.
void write_file_atomically(const std::string& path, const std::string& data) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  std::error_code ignored;
  if (target.has_parent_path()) {
    fs::create_directories(target.parent_path(), ignored);
  }
  const std::string temporary = path + ".tmp";
  auto fail = [&](const char* what, int error) {
    fs::remove(temporary, ignored);
    throw Error(fmt::format("checkpoint '{}' cannot be written: {}: {}", path, what,
                            std::strerror(error)));
  };
  const int fd = ::open(temporary.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) fail("open", errno);
  for (size_t done = 0; done < data.size();) {
    const ssize_t written = ::write(fd, data.data() + done, data.size() - done);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) {
      const int error = written < 0 ? errno : ENOSPC;
      ::close(fd);
      fail("write", error);
    }
    done += static_cast<size_t>(written);
  }
  if (::fsync(fd) != 0) {
    const int error = errno;
    ::close(fd);
    fail("fsync", error);
  }
  if (::close(fd) != 0) fail("close", errno);
  if (::rename(temporary.c_str(), path.c_str()) != 0) fail("rename", errno);  // atomic on POSIX
}

}  // namespace

std::string checkpoint_path(const std::string& checkpoint_dir, const std::string& config_hash) {
  return checkpoint_dir + "/" + config_hash + ".pt";
}

void save_checkpoint(const std::string& path, torch::nn::Module& model,
                     const torch::optim::Optimizer& optimizer, const TrainingProgress& progress) {
  torch::serialize::OutputArchive archive, model_archive, optimizer_archive;
  model.save(model_archive);
  optimizer.save(optimizer_archive);
  archive.write("model", model_archive);
  archive.write("optimizer", optimizer_archive);
  archive.write("step", torch::tensor(progress.step, torch::kLong));
  archive.write("train_seconds", torch::tensor(progress.train_seconds, torch::kDouble));
  archive.write("flops", torch::tensor(progress.flops, torch::kDouble));
  archive.write("tokens", torch::tensor(progress.tokens, torch::kDouble));
  archive.write("decay_start", torch::tensor(progress.decay_start, torch::kDouble));
  archive.write("format", torch::tensor(kFormatVersion, torch::kLong));
  std::ostringstream bytes;  // in memory first: LibTorch's file writer aborts on a full disk
  archive.save_to(bytes);
  write_file_atomically(path, bytes.str());
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
    throw Error(fmt::format("checkpoint '{}' cannot be loaded: {}", path, exception_text(e)));
  }
}

void load_model(torch::serialize::InputArchive& archive, torch::nn::Module& model) {
  torch::serialize::InputArchive model_archive;
  archive.read("model", model_archive);
  model.load(model_archive);
}

}  // namespace

TrainingProgress load_checkpoint(const std::string& path, torch::nn::Module& model,
                                 torch::optim::Optimizer& optimizer) {
  TrainingProgress progress;
  progress.step = read_checkpoint(path, [&](torch::serialize::InputArchive& archive) {
    load_model(archive, model);
    torch::serialize::InputArchive optimizer_archive;
    archive.read("optimizer", optimizer_archive);
    optimizer.load(optimizer_archive);
    // Each absent from checkpoints written before it was recorded.
    torch::Tensor seconds, flops, tokens, decay_start;
    if (archive.try_read("train_seconds", seconds)) progress.train_seconds = seconds.item<double>();
    progress.flops = archive.try_read("flops", flops) ? flops.item<double>() : std::nan("");
    progress.tokens = archive.try_read("tokens", tokens) ? tokens.item<double>() : std::nan("");
    if (archive.try_read("decay_start", decay_start)) progress.decay_start = decay_start.item<double>();
  });
  return progress;
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
    throw Error(fmt::format("checkpoint '{}' cannot be read: {}", path, exception_text(e)));
  }
}

}  // namespace moelab
