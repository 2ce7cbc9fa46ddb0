// NCCL communicator (see nccl_comm.h).
#include "nccl_comm.h"

#include <cstring>
#include <stdexcept>
#include <thread>

namespace moe::kernels {
namespace {

void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

}  // namespace

size_t nccl_type_size(ncclDataType_t type) {
  switch (type) {
    case ncclInt8: case ncclUint8: return 1;
    case ncclFloat16: case ncclBfloat16: return 2;
    case ncclInt32: case ncclUint32: case ncclFloat32: return 4;
    case ncclInt64: case ncclUint64: case ncclFloat64: return 8;
    default: throw std::runtime_error("nccl_type_size: unsupported NCCL data type " + std::to_string(type));
  }
}

std::string nccl_unique_id() {
  ncclUniqueId id;
  const ncclResult_t r = ncclGetUniqueId(&id);
  if (r != ncclSuccess) throw std::runtime_error(std::string("ncclGetUniqueId: ") + ncclGetErrorString(r));
  return std::string(id.internal, sizeof(id.internal));
}

NcclComm::NcclComm(const std::string& unique_id, int rank, int size, std::chrono::milliseconds timeout)
    : rank_(rank), size_(size), timeout_(timeout) {
  if (unique_id.size() != sizeof(ncclUniqueId::internal))
    throw std::runtime_error("NcclComm: the unique id must have " + std::to_string(sizeof(ncclUniqueId::internal)) +
                             " bytes, got " + std::to_string(unique_id.size()));
  ncclUniqueId id;
  std::memcpy(id.internal, unique_id.data(), sizeof(id.internal));
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // initialisation and collectives return at once; wait() polls with a deadline
  ncclResult_t r = ncclCommInitRankConfig(&comm_, size, id, rank, &config);
  if (r != ncclSuccess && r != ncclInProgress)
    throw std::runtime_error(std::string("ncclCommInitRankConfig: ") + ncclGetErrorString(r));
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  ncclResult_t state = ncclInProgress;
  do {
    ncclCommGetAsyncError(comm_, &state);
    if (state == ncclInProgress) {
      if (std::chrono::steady_clock::now() > deadline) {
        ncclCommAbort(comm_);
        aborted_ = true;
        throw std::runtime_error("NCCL communicator initialisation timed out (" +
                                 std::to_string(timeout_.count() / 1000.0) + " s): a peer did not join");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  } while (state == ncclInProgress);
  if (state != ncclSuccess) {
    ncclCommAbort(comm_);
    aborted_ = true;
    throw std::runtime_error(std::string("NCCL communicator initialisation: ") + ncclGetErrorString(state));
  }
}

NcclComm::~NcclComm() {
  if (comm_ != nullptr && !aborted_) ncclCommDestroy(comm_);
}

void NcclComm::check(ncclResult_t result, const char* what) {
  if (result == ncclSuccess || result == ncclInProgress) return;
  ncclCommAbort(comm_);
  aborted_ = true;
  throw std::runtime_error(std::string(what) + ": " + ncclGetErrorString(result) + " (" + ncclGetLastError(comm_) + ")");
}

void NcclComm::all_to_all_v(const void* send, const std::vector<int64_t>& send_counts, void* recv,
                            const std::vector<int64_t>& recv_counts, int64_t row_elems, ncclDataType_t type,
                            cudaStream_t stream) {
  if (static_cast<int>(send_counts.size()) != size_ || static_cast<int>(recv_counts.size()) != size_)
    throw std::runtime_error("NcclComm::all_to_all_v: one count per rank is needed");
  const size_t bytes = nccl_type_size(type) * static_cast<size_t>(row_elems > 0 ? row_elems : 1);
  const size_t scale = static_cast<size_t>(row_elems > 0 ? row_elems : 1);
  const char* s = static_cast<const char*>(send);
  char* d = static_cast<char*>(recv);
  check(ncclGroupStart(), "ncclGroupStart");
  size_t sent = 0, received = 0;
  for (int q = 0; q < size_; ++q) {
    const auto n_send = static_cast<size_t>(send_counts[q]), n_recv = static_cast<size_t>(recv_counts[q]);
    if (n_send > 0) check(ncclSend(s + sent * bytes, n_send * scale, type, q, comm_, stream), "ncclSend");
    if (n_recv > 0) check(ncclRecv(d + received * bytes, n_recv * scale, type, q, comm_, stream), "ncclRecv");
    sent += n_send;
    received += n_recv;
  }
  check(ncclGroupEnd(), "ncclGroupEnd");
}

void NcclComm::all_reduce(void* buffer, size_t count, ncclDataType_t type, ncclRedOp_t op, cudaStream_t stream) {
  check(ncclAllReduce(buffer, buffer, count, type, op, comm_, stream), "ncclAllReduce");
}

void NcclComm::all_gather(const void* send, void* recv, size_t count, ncclDataType_t type, cudaStream_t stream) {
  check(ncclAllGather(send, recv, count, type, comm_, stream), "ncclAllGather");
}

void NcclComm::broadcast(void* buffer, size_t count, ncclDataType_t type, int root, cudaStream_t stream) {
  check(ncclBroadcast(buffer, buffer, count, type, root, comm_, stream), "ncclBroadcast");
}

void NcclComm::wait(cudaStream_t stream) {
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  while (true) {
    const cudaError_t q = cudaStreamQuery(stream);
    if (q == cudaSuccess) return;
    if (q != cudaErrorNotReady) cuda_check(q, "cudaStreamQuery");
    ncclResult_t state = ncclSuccess;
    ncclCommGetAsyncError(comm_, &state);
    if (state != ncclSuccess && state != ncclInProgress) check(state, "NCCL asynchronous error");
    if (std::chrono::steady_clock::now() > deadline) {
      ncclCommAbort(comm_);
      aborted_ = true;
      throw std::runtime_error("NCCL collective did not finish within " + std::to_string(timeout_.count() / 1000.0) +
                               " s: a peer process may have exited or hung; the communicator was aborted");
    }
    std::this_thread::yield();
  }
}

}  // namespace moe::kernels
