// NCCL communicator without LibTorch: raw device pointers, element counts, cudaStream_t. The glue in
// src/parallel/nccl_communicator.cpp (CUDA tier) wraps it for tensors. All-to-all-v is a group of
// ncclSend/ncclRecv pairs, one per peer (NCCL has no all-to-all-v collective). The communicator is
// created non-blocking, so wait() can poll for completion and abort after a timeout instead of
// hanging on a dead peer. Every failure throws std::runtime_error with NCCL's or CUDA's message.
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace moe::kernels {

/// A fresh ncclUniqueId as NCCL_UNIQUE_ID_BYTES bytes (rank 0 creates it and shares it).
std::string nccl_unique_id();

class NcclComm {
 public:
  /// Collective over `size` processes; `unique_id` from nccl_unique_id() on one of them.
  NcclComm(const std::string& unique_id, int rank, int size, std::chrono::milliseconds timeout);
  ~NcclComm();
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }

  /// send: Σ send_counts elements, send_counts[q] of them to rank q in rank order; recv likewise.
  /// Counts are in elements of `type`; row_elems > 0 scales each count (rows of row_elems elements).
  void all_to_all_v(const void* send, const std::vector<int64_t>& send_counts, void* recv,
                    const std::vector<int64_t>& recv_counts, int64_t row_elems, ncclDataType_t type,
                    cudaStream_t stream);
  void all_reduce(void* buffer, size_t count, ncclDataType_t type, ncclRedOp_t op, cudaStream_t stream);
  void all_gather(const void* send, void* recv, size_t count, ncclDataType_t type, cudaStream_t stream);
  void broadcast(void* buffer, size_t count, ncclDataType_t type, int root, cudaStream_t stream);
  /// Blocks until `stream` has finished the enqueued work; aborts the communicator and throws when
  /// NCCL reports an asynchronous error or the timeout passes (a peer died or hangs).
  void wait(cudaStream_t stream);

 private:
  /// Reads NCCL's message, aborts the communicator and throws.
  void check(ncclResult_t result, const char* what);
  void check_usable(const char* what) const;
  void abort();
  ncclComm_t comm_ = nullptr;
  int rank_ = 0, size_ = 1;
  std::chrono::milliseconds timeout_;
  bool aborted_ = false;
};

/// Bytes per element of an NCCL data type.
size_t nccl_type_size(ncclDataType_t type);

}  // namespace moe::kernels
