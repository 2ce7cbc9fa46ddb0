// Every random generator a run draws from, captured and restored in one place: LibTorch's default
// CPU generator (dropout on the CPU, Gumbel noise, THOR's draws, initial values) and, on a GPU, the
// default CUDA generator of the run's device. Checkpoints store each rank's state (exact resume);
// validation and evaluation run under a ScopedSeed, so their draws (SMoE's sampled second expert,
// THOR's random expert) are the same on every rank and never move the training stream.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>

namespace moe {

struct RandomState {
  at::Tensor cpu;   ///< [bytes] uint8, the CPU generator's state
  at::Tensor cuda;  ///< [bytes] uint8, the CUDA generator's state; undefined off the GPU
};

/// The state of every generator `device` draws from.
RandomState capture_random_state(const at::Device& device);
/// Puts every generator back where `state` was taken (a missing CUDA state leaves that one alone).
void restore_random_state(const RandomState& state, const at::Device& device);
/// Seeds every generator `device` draws from.
void seed_random_state(uint64_t seed, const at::Device& device);

/// Seeds every generator for the scope and restores their previous state on exit.
class ScopedSeed {
 public:
  ScopedSeed(uint64_t seed, const at::Device& device);
  ~ScopedSeed();
  ScopedSeed(const ScopedSeed&) = delete;
  ScopedSeed& operator=(const ScopedSeed&) = delete;

 private:
  at::Device device_;
  RandomState saved_;
};

}  // namespace moe
