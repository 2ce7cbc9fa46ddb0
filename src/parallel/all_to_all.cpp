// all_to_all_rows (see moe/parallel/all_to_all.h).
#include "moe/parallel/all_to_all.h"

#include <ATen/ATen.h>
#include <ATen/core/ivalue.h>
#include <torch/autograd.h>

#include "moe/core/error.h"

namespace moe {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

at::Tensor exchange(const at::Tensor& input, const std::vector<int64_t>& output_splits,
                    const std::vector<int64_t>& input_splits, Communicator& comm) {
  int64_t rows = 0;
  for (auto s : output_splits) rows += s;
  std::vector<int64_t> shape(input.sizes().begin(), input.sizes().end());
  shape[0] = rows;
  auto output = at::empty(shape, input.options());
  auto in = input.contiguous();
  comm.all_to_all_single(output, in, output_splits, input_splits);
  return output;
}

// The communicator rides in the autograd context as a capsule (it is not an IValue type).
struct CommHolder : public torch::CustomClassHolder {
  explicit CommHolder(std::shared_ptr<Communicator> c) : comm(std::move(c)) {}
  std::shared_ptr<Communicator> comm;
};

struct AllToAllRows : public torch::autograd::Function<AllToAllRows> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& /*anchor*/,
                            const std::vector<int64_t>& output_splits, const std::vector<int64_t>& input_splits,
                            const std::shared_ptr<Communicator>& comm) {
    ctx->saved_data["out"] = c10::IValue(output_splits);
    ctx->saved_data["in"] = c10::IValue(input_splits);
    ctx->saved_data["comm"] = c10::IValue::make_capsule(c10::make_intrusive<CommHolder>(comm));
    return exchange(input, output_splits, input_splits, *comm);
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto out = ctx->saved_data["out"].toIntVector(), in = ctx->saved_data["in"].toIntVector();
    auto holder = c10::static_intrusive_pointer_cast<CommHolder>(ctx->saved_data["comm"].toCapsule());
    auto grad = grads[0];
    MOE_CHECK(grad.defined(), "all_to_all_rows: backward received no gradient");
    // Reverse route: the out[q] rows that came from rank q go back to it; in[q] rows come back.
    return {exchange(grad.contiguous(), in, out, *holder->comm), at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor()};
  }
};

}  // namespace

at::Tensor all_to_all_rows(const at::Tensor& input, const std::vector<int64_t>& output_splits,
                           const std::vector<int64_t>& input_splits, const std::shared_ptr<Communicator>& comm,
                           const at::Tensor& anchor) {
  MOE_CHECK(comm != nullptr, "all_to_all_rows: the communicator is null");
  MOE_CHECK(input.defined() && input.dim() >= 1, "all_to_all_rows: input must have rank >= 1 (rows first), got ",
            input.defined() ? std::to_string(input.dim()) : std::string("an undefined tensor"));
  MOE_CHECK(!anchor.defined() || anchor.dim() == 0, "all_to_all_rows: anchor must be 0-dim, got ", anchor.sizes());
  return AllToAllRows::apply(input, anchor.defined() ? anchor : at::zeros({}, input.options()), output_splits,
                             input_splits, comm);
}

}  // namespace moe
