// Internal: the backend factories behind make_communicator (moe/parallel/communicator.h), each in
// its own translation unit so that Gloo's and NCCL's headers stay out of the rest of the library.
#pragma once

#include <torch/csrc/distributed/c10d/Store.hpp>

#include <memory>

#include "moe/parallel/communicator.h"
#include "moe/parallel/rendezvous.h"

namespace moe::detail {

/// Gloo over c10d (src/parallel/gloo_communicator.cpp; needs Gloo's headers at build time).
std::shared_ptr<Communicator> make_gloo_communicator(const CommunicatorOptions& options, const DistributedEnv& env);
/// NCCL (src/parallel/nccl_communicator.cpp; CUDA tier only).
std::shared_ptr<Communicator> make_nccl_communicator(const CommunicatorOptions& options, const DistributedEnv& env);

/// The rendezvous store at env.master_addr:env.master_port (rank 0 serves it), with the options'
/// timeout; throws moe::Error naming the address, the rank and `backend` when it cannot be reached.
c10::intrusive_ptr<c10d::Store> make_tcp_store(const CommunicatorOptions& options, const DistributedEnv& env,
                                               const std::string& backend);

/// Checks the arguments of all_to_all_single against the group size; `who` names the communicator.
void check_all_to_all(const at::Tensor& output, const at::Tensor& input, const std::vector<int64_t>& output_splits,
                      const std::vector<int64_t>& input_splits, int size, const std::string& who);

}  // namespace moe::detail
