// Capturing and restoring the run's random generators (see moe/train/random_state.h).
#include "moe/train/random_state.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <mutex>
#include <vector>

namespace moe {

namespace {

// The generators `device` draws from: the CPU one, and the device's own on a GPU.
std::vector<at::Generator> generators(const at::Device& device) {
  std::vector<at::Generator> out{at::detail::getDefaultCPUGenerator()};
  if (device.is_cuda()) out.push_back(at::globalContext().defaultGenerator(device));
  return out;
}

}  // namespace

RandomState capture_random_state(const at::Device& device) {
  RandomState state;
  auto gens = generators(device);
  for (size_t i = 0; i < gens.size(); ++i) {
    std::lock_guard<std::mutex> lock(gens[i].mutex());
    (i == 0 ? state.cpu : state.cuda) = gens[i].get_state();
  }
  return state;
}

void restore_random_state(const RandomState& state, const at::Device& device) {
  auto gens = generators(device);
  for (size_t i = 0; i < gens.size(); ++i) {
    const auto& saved = i == 0 ? state.cpu : state.cuda;
    if (!saved.defined()) continue;
    std::lock_guard<std::mutex> lock(gens[i].mutex());
    // set_state reads from offset 0 of a contiguous CPU byte tensor: hand it a copy of its own.
    gens[i].set_state(saved.cpu().contiguous().clone());
  }
}

void seed_random_state(uint64_t seed, const at::Device& device) {
  for (auto& g : generators(device)) {
    std::lock_guard<std::mutex> lock(g.mutex());
    g.set_current_seed(seed);
  }
}

ScopedSeed::ScopedSeed(uint64_t seed, const at::Device& device)
    : device_(device), saved_(capture_random_state(device)) {
  seed_random_state(seed, device);
}

ScopedSeed::~ScopedSeed() { restore_random_state(saved_, device_); }

}  // namespace moe
