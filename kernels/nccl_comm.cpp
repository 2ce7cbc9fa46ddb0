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
  if (r != ncclSuccess && r != ncclInProgress) {
    comm_ = nullptr;
    throw std::runtime_error(std::string("ncclCommInitRankConfig: ") + ncclGetErrorString(r));
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  ncclResult_t state = ncclInProgress;
  do {
    ncclCommGetAsyncError(comm_, &state);
    if (state == ncclInProgress) {
      if (std::chrono::steady_clock::now() > deadline) {
        abort();
        throw std::runtime_error("NCCL communicator initialisation timed out (" +
                                 std::to_string(timeout_.count() / 1000.0) + " s): a peer did not join");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  } while (state == ncclInProgress);
  if (state != ncclSuccess) {
    abort();
    throw std::runtime_error(std::string("NCCL communicator initialisation: ") + ncclGetErrorString(state));
  }
}

NcclComm::~NcclComm() {
  if (comm_ == nullptr || aborted_) return;
  // Non-blocking communicator: finalize, wait for it to settle, then destroy.
  {
    ncclCommFinalize(comm_);
    const auto deadline = std::chrono::steady_clock::now() + timeout_;
    ncclResult_t state = ncclInProgress;
    do {
      ncclCommGetAsyncError(comm_, &state);
      if (state == ncclInProgress) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    } while (state == ncclInProgress && std::chrono::steady_clock::now() < deadline);
    if (state != ncclSuccess) {
      ncclCommAbort(comm_);
      return;
    }
  }
  ncclCommDestroy(comm_);
}

void NcclComm::abort() {
  if (comm_ != nullptr && !aborted_) ncclCommAbort(comm_);
  aborted_ = true;
}

void NcclComm::check_usable(const char* what) const {
  if (aborted_)
    throw std::runtime_error(std::string(what) + ": the NCCL communicator was aborted after an earlier failure");
}

void NcclComm::check(ncclResult_t result, const char* what) {
  if (result == ncclSuccess || result == ncclInProgress) return;
  const std::string message = std::string(what) + ": " + ncclGetErrorString(result) + " (" + ncclGetLastError(comm_) + ")";
  abort();
  throw std::runtime_error(message);
}

void NcclComm::all_to_all_v(const void* send, const std::vector<int64_t>& send_counts, void* recv,
                            const std::vector<int64_t>& recv_counts, int64_t row_elems, ncclDataType_t type,
                            cudaStream_t stream) {
  check_usable("NcclComm::all_to_all_v");
  if (static_cast<int>(send_counts.size()) != size_ || static_cast<int>(recv_counts.size()) != size_)
    throw std::runtime_error("NcclComm::all_to_all_v: one count per rank (" + std::to_string(size_) +
                             ") is needed, got " + std::to_string(send_counts.size()) + " send and " +
                             std::to_string(recv_counts.size()) + " receive counts");
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
  check_usable("NcclComm::all_reduce");
  check(ncclAllReduce(buffer, buffer, count, type, op, comm_, stream), "ncclAllReduce");
}

void NcclComm::all_gather(const void* send, void* recv, size_t count, ncclDataType_t type, cudaStream_t stream) {
  check_usable("NcclComm::all_gather");
  check(ncclAllGather(send, recv, count, type, comm_, stream), "ncclAllGather");
}

void NcclComm::broadcast(void* buffer, size_t count, ncclDataType_t type, int root, cudaStream_t stream) {
  check_usable("NcclComm::broadcast");
  check(ncclBroadcast(buffer, buffer, count, type, root, comm_, stream), "ncclBroadcast");
}

void NcclComm::wait(cudaStream_t stream) {
  check_usable("NcclComm::wait");
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  auto timed_out = [&] {
    abort();
    throw std::runtime_error("NCCL collective did not finish within " + std::to_string(timeout_.count() / 1000.0) +
                             " s: a peer process may have exited or hung; the communicator was aborted");
  };
  // 1. A non-blocking communicator may still be enqueueing (ncclInProgress): only once it is done are
  //    the kernels on the stream.
  ncclResult_t state = ncclInProgress;
  while (true) {
    ncclCommGetAsyncError(comm_, &state);
    if (state != ncclInProgress) break;
    if (std::chrono::steady_clock::now() > deadline) timed_out();
    std::this_thread::yield();
  }
  check(state, "NCCL asynchronous error");
  // 2. Then the stream.
  while (true) {
    const cudaError_t q = cudaStreamQuery(stream);
    if (q == cudaSuccess) return;
    if (q != cudaErrorNotReady) cuda_check(q, "cudaStreamQuery");
    ncclCommGetAsyncError(comm_, &state);
    if (state != ncclSuccess && state != ncclInProgress) check(state, "NCCL asynchronous error");
    if (std::chrono::steady_clock::now() > deadline) timed_out();
    std::this_thread::yield();
  }
}

}  // namespace moe::kernels
