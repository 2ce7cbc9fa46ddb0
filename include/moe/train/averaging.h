// Checkpoint averaging, as fairseq's scripts/average_checkpoints.py: the model's parameters and
// buffers averaged over several checkpoints of one run (typically the last 5-10; +0.3 to 1 BLEU in
// NMT), written as a checkpoint that moe-translate loads. Sums run in the parameter's dtype (fp16 and
// bf16 in fp32) in the order given, then divide by the count (integer entries: floor division);
// everything else (configuration, tokenizer, step) comes from the last checkpoint. Checkpoints
// sharded over any expert-parallel size are read whole; the average is one file, experts inline.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moe {

/// The paths of the newest `n` step checkpoints of `run_dir`, oldest first. Throws moe::Error when
/// there are fewer.
std::vector<std::string> last_step_checkpoints(const std::string& run_dir, int64_t n);

/// Averages `inputs` (>= 1, one model) into `output`. The output records trainer.averaged_from (the
/// inputs) and no optimizer state: it is for translation, not for resuming. Throws moe::Error naming
/// the checkpoint and the entry when the inputs are not of one model.
void average_checkpoints(const std::vector<std::string>& inputs, const std::string& output);

}  // namespace moe
