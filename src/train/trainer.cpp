// The translation trainer (see moe/train/trainer.h).
#include "moe/train/trainer.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <limits>
#include <sstream>

#include "moe/core/error.h"
#include "moe/core/hash.h"
#include "moe/core/json.h"
#include "moe/core/logging.h"
#include "moe/data/gettext_corpus.h"
#include "moe/eval/sacrebleu.h"
#include "moe/eval/translate.h"
#include "moe/layers/expert_parallel.h"
#include "moe/parallel/communicator.h"
#include "moe/parallel/grad_sync.h"
#include "moe/parallel/process_groups.h"
#include "moe/parallel/rendezvous.h"
#include "moe/train/checkpoint_file.h"
#include "moe/train/consistency.h"
#include "moe/train/label_smoothing.h"
#include "moe/train/report.h"
#include "moe/train/schedule.h"
#include "moe/train/sharded_state.h"

namespace moe {
namespace fs = std::filesystem;

namespace {

constexpr int64_t kCheckpointFormat = 1;

std::string hex64(uint64_t v) {
  std::ostringstream out;
  out << std::hex << std::setw(16) << std::setfill('0') << v;
  return out.str();
}

std::string direction_name(const std::pair<std::string, std::string>& d) { return d.first + "-" + d.second; }

template <typename... Args>
void info(const Args&... args) {
  log_info(detail::concat(args...));
}

// The gettext corpus, built once per (locale folder, languages, options) under the cache folder.
std::string gettext_corpus_root(const RunConfig& c) {
  MOE_CHECK(c.data.pivot == "en", "data.pivot must be 'en' for the gettext corpus (English msgids), got '",
            c.data.pivot, "'");
  GettextCorpusOptions g;
  g.locale_root = c.data.locale_root;
  g.languages.clear();
  for (const auto& [src, tgt] : run_directions(c.data)) {
    const auto& lang = src == "en" ? tgt : src;
    MOE_CHECK(src == "en" || tgt == "en", "data.directions: the gettext corpus pairs English with each language; got ",
              src, "-", tgt);
    if (std::find(g.languages.begin(), g.languages.end(), lang) == g.languages.end()) g.languages.push_back(lang);
  }
  std::sort(g.languages.begin(), g.languages.end());
  std::string key = "gettext-v1|" + g.locale_root + "|" + std::to_string(g.min_chars) + "|" +
                    std::to_string(g.max_chars) + "|" + std::to_string(g.valid_per_mille) + "|" +
                    std::to_string(g.test_per_mille);
  for (const auto& l : g.languages) key += "|" + l;
  const fs::path dir = fs::path(c.data.cache_dir) / ("gettext-" + hex64(fnv1a64(key)).substr(0, 12));
  if (fs::exists(dir / "COMPLETE")) {
    info("[data] reusing the gettext corpus in ", dir.string());
    return dir.string();
  }
  info("[data] building the gettext corpus (", g.languages.size(), " languages) from ", g.locale_root, " into ",
       dir.string());
  const fs::path tmp = dir.string() + ".tmp." + std::to_string(::getpid());
  fs::remove_all(tmp);
  auto report = build_gettext_corpus(tmp.string(), g);
  for (const auto& [lang, splits] : report.pairs) {
    std::ostringstream line;
    line << "[data] en-" << lang << ": " << report.catalogs.at(lang) << " catalogs;";
    for (const auto& [split, n] : splits) line << " " << split << " " << n;
    log_info(line.str());
  }
  std::ofstream(tmp / "COMPLETE") << key << "\n";
  std::error_code ec;
  fs::rename(tmp, dir, ec);
  if (ec) fs::remove_all(tmp);  // another process finished first: use its copy
  MOE_CHECK(fs::exists(dir / "COMPLETE"), "[data] could not create the corpus folder ", dir.string(), ": ",
            ec.message());
  return dir.string();
}

ParallelText read_capped(const std::string& root, const std::pair<std::string, std::string>& d,
                         const std::string& split, int64_t cap, int64_t max_line_bytes) {
  CorpusReadOptions o;
  o.max_line_bytes = max_line_bytes;
  auto text = read_parallel(root, d.first, d.second, split, o);
  if (text.skipped_long > 0)
    info("[data] ", direction_name(d), " ", split, ": skipped ", text.skipped_long, " pairs longer than ",
         max_line_bytes, " bytes");
  if (cap > 0 && static_cast<int64_t>(text.source.size()) > cap) {
    text.source.resize(static_cast<size_t>(cap));
    text.target.resize(static_cast<size_t>(cap));
  }
  return text;
}

at::Device parse_device(const std::string& name) {
  at::Device device(name);
  MOE_CHECK(!device.is_cuda() || at::hasCUDA(), "train.device = ", name,
            ": this LibTorch has no usable CUDA (moe was built without CUDA support or no GPU is visible)");
  return device;
}

at::Tensor read_tensor(torch::serialize::InputArchive& a, const std::string& key, const std::string& path) {
  at::Tensor t;
  MOE_CHECK(a.try_read(key, t), "checkpoint ", path, " has no '", key, "' entry");
  return t;
}

// Keys whose change makes a resumed run a different experiment.
bool must_match_on_resume(const std::string& key) {
  for (const char* prefix : {"data.", "tokenizer.", "model.", "moe."})
    if (key.rfind(prefix, 0) == 0)
      return key != "data.max_test_sentences" && key != "data.cache_dir" && key != "data.locale_root";
  return false;
}

bool informational_on_resume(const std::string& key) {
  for (const char* k : {"run_dir", "log_level", "train.max_steps", "train.max_minutes", "train.log_every",
                        "train.stats_every", "train.checkpoint_every", "train.keep_last", "train.threads"})
    if (key == k) return true;
  return key.rfind("eval.", 0) == 0 || key.rfind("parallel.", 0) == 0;
}

// A checkpoint read and verified once: its archive (tensors on `device`), config and tokenizer. A
// multi-process run's checkpoint is sharded (moe/train/sharded_state.h): then `sharded` holds its
// entries (the expert entries that `wanted` accepts) and `archive` is unused.
struct OpenCheckpoint {
  torch::serialize::InputArchive archive;
  bool is_sharded = false;
  NamedState sharded;
  RunConfig config;
  SentencePieceTokenizer tokenizer;
  int64_t step = 0;
};

at::Tensor sharded_entry(const NamedState& state, const std::string& key, const std::string& path) {
  auto it = state.find(key);
  MOE_CHECK(it != state.end(), "checkpoint ", path, " has no '", key, "' entry");
  return it->second;
}

// "<dir>/checkpoint-<step>.moeckpt" -> "<dir>/checkpoint-<step>" (the sharded files' prefix).
std::string checkpoint_prefix(const std::string& path) {
  const std::string suffix = ".moeckpt";
  MOE_CHECK(path.size() > suffix.size() && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0,
            "checkpoint ", path, " must end in .moeckpt");
  return path.substr(0, path.size() - suffix.size());
}

// Removes expert shards beside `path` that the save just written there does not own: those of
// another expert-parallel size, or all of them after a single-file save (keep_parallel_size 0).
void remove_stale_shards(const std::string& path, int keep_parallel_size) {
  const auto prefix = fs::path(checkpoint_prefix(path)).filename().string() + ".experts-";
  const auto keep = "-of-" + std::to_string(keep_parallel_size) + ".moeckpt";
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(fs::path(path).parent_path(), ec)) {
    const auto name = entry.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    if (keep_parallel_size > 0 && name.size() > keep.size() &&
        name.compare(name.size() - keep.size(), keep.size(), keep) == 0)
      continue;
    fs::remove(entry.path());
  }
}

// Removes a step checkpoint: its file and, for a sharded one, every expert shard beside it.
void remove_checkpoint(const std::string& path) {
  const auto prefix = fs::path(checkpoint_prefix(path)).filename().string() + ".experts-";
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(fs::path(path).parent_path(), ec))
    if (entry.path().filename().string().rfind(prefix, 0) == 0) fs::remove(entry.path());
  fs::remove(path);
}

// The batcher's exact-resume state as one int64 tensor: step, D, epoch[D], cursor[D].
at::Tensor batcher_state_tensor(const TokenBatcher& batcher) {
  const auto b = batcher.state();
  std::vector<int64_t> bs{static_cast<int64_t>(b.step), static_cast<int64_t>(b.epoch.size())};
  bs.insert(bs.end(), b.epoch.begin(), b.epoch.end());
  bs.insert(bs.end(), b.cursor.begin(), b.cursor.end());
  return at::tensor(bs, at::kLong);
}

void restore_batcher_state(TokenBatcher& batcher, const at::Tensor& tensor, const std::string& path) {
  auto b = tensor.cpu().contiguous();
  MOE_CHECK(b.numel() >= 2, "checkpoint ", path, ": malformed batcher state (", b.numel(),
            " values; expected step, D, then 2·D)");
  const int64_t* p = b.data_ptr<int64_t>();
  TokenBatcher::State bs;
  bs.step = static_cast<uint64_t>(p[0]);
  const int64_t D = p[1];
  MOE_CHECK(D >= 0 && b.numel() == 2 + 2 * D, "checkpoint ", path, ": malformed batcher state (", b.numel(),
            " values for D = ", D, "; expected ", 2 + 2 * D, ")");
  bs.epoch.assign(p + 2, p + 2 + D);
  bs.cursor.assign(p + 2 + D, p + 2 + 2 * D);
  batcher.restore(bs);
}

std::unique_ptr<OpenCheckpoint> open_checkpoint(const std::string& path, const at::Device& device,
                                                const std::function<bool(int64_t)>& wanted = nullptr) {
  const auto payload = read_checkpoint_file(path);
  auto out = std::make_unique<OpenCheckpoint>();
  out->archive.load_from(payload.data(), payload.size(), device);
  at::Tensor names;
  if (out->archive.try_read("names", names)) {
    out->is_sharded = true;
    out->sharded = load_sharded_state(checkpoint_prefix(path), wanted ? wanted : [](int64_t) { return true; });
    const auto format = sharded_entry(out->sharded, "trainer.format", path).item<int64_t>();
    MOE_CHECK(format == kCheckpointFormat, "checkpoint ", path, " has format ", format, "; this build reads format ",
              kCheckpointFormat);
    apply_toml(out->config, tensor_string(sharded_entry(out->sharded, "trainer.config", path)),
               "the config stored in " + path);
    out->tokenizer =
        SentencePieceTokenizer::from_serialized(tensor_string(sharded_entry(out->sharded, "trainer.tokenizer", path)));
    out->step = sharded_entry(out->sharded, "trainer.step", path).item<int64_t>();
    return out;
  }
  const auto format = read_tensor(out->archive, "format", path).item<int64_t>();
  MOE_CHECK(format == kCheckpointFormat, "checkpoint ", path, " has format ", format, "; this build reads format ",
            kCheckpointFormat);
  apply_toml(out->config, tensor_string(read_tensor(out->archive, "config", path)), "the config stored in " + path);
  out->tokenizer = SentencePieceTokenizer::from_serialized(tensor_string(read_tensor(out->archive, "tokenizer", path)));
  out->step = read_tensor(out->archive, "step", path).item<int64_t>();
  return out;
}

}  // namespace

// ---- data ----------------------------------------------------------------------------------------

TranslationData load_translation_data(const RunConfig& c, const SentencePieceTokenizer* tokenizer) {
  TranslationData data;
  data.directions = run_directions(c.data);
  data.corpus_root = c.data.corpus == "gettext" ? gettext_corpus_root(c) : c.data.root;
  std::vector<ParallelText> train_text, valid_text;
  for (const auto& d : data.directions) {
    train_text.push_back(read_capped(data.corpus_root, d, "train", c.data.max_train_pairs, c.data.max_line_bytes));
    valid_text.push_back(read_capped(data.corpus_root, d, "valid", c.data.max_valid_sentences, c.data.max_line_bytes));
    const int64_t eval_cap = c.eval.split == "valid" ? c.data.max_valid_sentences : c.data.max_test_sentences;
    data.eval_text.push_back(read_capped(data.corpus_root, d, c.eval.split, eval_cap, c.data.max_line_bytes));
  }
  std::vector<std::string> tags;
  for (const auto& d : data.directions) {
    const auto tag = "<2" + d.second + ">";
    if (std::find(tags.begin(), tags.end(), tag) == tags.end()) tags.push_back(tag);
  }
  if (tokenizer != nullptr) {
    data.tokenizer = *tokenizer;
  } else {
    // One joint model over both sides of every language pair's training text (each pair once).
    fs::create_directories(c.data.cache_dir);
    const fs::path input = fs::path(c.data.cache_dir) / ("spm-input." + std::to_string(::getpid()) + ".txt");
    {
      std::ofstream out(input);
      MOE_CHECK(out.good(), "[data] cannot write ", input.string());
      std::vector<std::pair<std::string, std::string>> seen;
      for (size_t i = 0; i < data.directions.size(); ++i) {
        auto key = std::minmax(data.directions[i].first, data.directions[i].second);
        if (std::find(seen.begin(), seen.end(), std::make_pair(key.first, key.second)) != seen.end()) continue;
        seen.emplace_back(key.first, key.second);
        for (size_t j = 0; j < train_text[i].source.size(); ++j)
          out << train_text[i].source[j] << '\n' << train_text[i].target[j] << '\n';
      }
    }
    SentencePieceOptions so;
    so.vocab_size = static_cast<int>(c.tokenizer.vocab_size);
    so.model_type = c.tokenizer.model_type;
    so.character_coverage = c.tokenizer.character_coverage;
    so.input_sentence_size = c.tokenizer.input_sentence_size;
    so.user_symbols = tags;
    so.seed = static_cast<uint64_t>(c.train.seed);
    bool trained = false;
    try {
      data.tokenizer = SentencePieceTokenizer::train_or_load(
          {input.string()}, (fs::path(c.data.cache_dir) / "tokenizers").string(), so, &trained);
    } catch (...) {
      fs::remove(input);
      throw;
    }
    fs::remove(input);
    info("[data] SentencePiece ", c.tokenizer.model_type, " vocabulary of ", data.tokenizer.vocab_size(), " pieces (",
         trained ? "trained" : "cached", ": ", data.tokenizer.model_path(), ")");
  }
  for (size_t i = 0; i < data.directions.size(); ++i) {
    const auto tag = "<2" + data.directions[i].second + ">";
    const auto di = static_cast<int64_t>(i);
    data.train.push_back(encode_examples(train_text[i], data.tokenizer, tag, di, c.data.max_length));
    data.valid.push_back(encode_examples(valid_text[i], data.tokenizer, tag, di, c.data.max_length));
    MOE_CHECK(!data.train.back().empty(), "[data] ", direction_name(data.directions[i]),
              ": no training example fits data.max_length=", c.data.max_length);
    info("[data] ", direction_name(data.directions[i]), ": train ", data.train.back().size(), " (of ",
         train_text[i].source.size(), "), valid ", data.valid.back().size(), ", ", c.eval.split, " ",
         data.eval_text[i].source.size());
  }
  return data;
}

// ---- trainer state -------------------------------------------------------------------------------

struct Trainer::State {
  at::Device device{at::kCPU};
  std::unique_ptr<torch::optim::AdamW> optimizer;
  std::unique_ptr<TokenBatcher> batcher;
  InverseSqrtSchedule schedule;
  std::unique_ptr<MetricsLog> metrics;
  double best_valid = std::numeric_limits<double>::infinity();
  double elapsed_before = 0;  ///< seconds trained before this process (resumed runs)
  double session_seconds = 0;
  bool tty = false;
  bool bf16 = false;
  // MoE statistics since the last report, per layer.
  struct Accum {
    at::Tensor tokens_per_expert;  // [E] double
    double dropped = 0, experts_per_token = 0, passes = 0;
    int64_t calls = 0;
  };
  std::map<std::string, Accum> moe;
  // Per direction, per layer: assignments per expert since the last report.
  std::map<std::string, std::map<std::string, at::Tensor>> usage;
  std::map<std::string, double> last_experts_per_token;
  int64_t last_checkpoint_step = -1, last_validation_step = -1;
  // Multi-process runs (parallel.backend gloo/nccl): null world = one process.
  std::shared_ptr<Communicator> world;
  ParallelGroups groups;
  std::unique_ptr<GradientSynchronizer> sync;
  int rank = 0, world_size = 1;
  bool writer() const { return rank == 0; }  ///< logs, metrics, heatmaps, results, shared checkpoint file

  void add_stats(const std::vector<LayerStats>& stats, const std::string& direction) {
    for (const auto& s : stats) {
      auto& a = moe[s.name];
      auto tpe = s.stats.tokens_per_expert.detach().to(at::kCPU, at::kDouble);
      a.tokens_per_expert = a.tokens_per_expert.defined() ? a.tokens_per_expert + tpe : tpe;
      if (s.stats.dropped_fraction.defined()) a.dropped += s.stats.dropped_fraction.item<double>();
      if (s.stats.experts_per_token.defined()) a.experts_per_token += s.stats.experts_per_token.item<double>();
      a.passes += s.stats.passes_per_token.defined() ? s.stats.passes_per_token.item<double>() : 1.0;
      ++a.calls;
      auto& u = usage[direction][s.name];
      u = u.defined() ? u + tpe : tpe;
    }
  }
};

Trainer::~Trainer() = default;

namespace {
// Multi-process validation and evaluation: every rank runs the same batches (the expert exchange
// needs every rank in every layer call), so random draws in evaluation (SMoE's sampled second
// expert, THOR's random expert) must be the same everywhere: the default generator is reseeded from
// (seed, step) for the scope and restored afterwards. One process: nothing changes.
struct SameDrawsOnAllRanks {
  SameDrawsOnAllRanks(bool active, int64_t seed, int64_t step, const at::Device& device)
      : active_(active), device_(device) {
    if (!active_) return;
    const auto s = static_cast<uint64_t>(seed) * 1000003ULL + static_cast<uint64_t>(step);
    auto generator = at::detail::getDefaultCPUGenerator();
    saved_ = generator.get_state();
    generator.set_current_seed(s);
    if (device_.is_cuda()) {
      auto g = at::globalContext().defaultGenerator(device_);
      saved_cuda_ = g.get_state();
      g.set_current_seed(s);
    }
  }
  ~SameDrawsOnAllRanks() {
    if (!active_) return;
    auto generator = at::detail::getDefaultCPUGenerator();
    generator.set_state(saved_);
    if (device_.is_cuda()) {
      auto g = at::globalContext().defaultGenerator(device_);
      g.set_state(saved_cuda_);
    }
  }
  bool active_;
  at::Device device_;
  at::Tensor saved_, saved_cuda_;
};
}  // namespace

Trainer::Trainer(RunConfig config, const std::string& resume_from) : config_(std::move(config)), state_(new State) {
  config_.validate();
  auto& s = *state_;
  const auto env = read_distributed_env();
  if (config_.parallel.backend != "local" || env.world_size > 1) {
    CommunicatorOptions co;
    co.backend = config_.parallel.backend;
    co.timeout_s = config_.parallel.timeout_s;
    s.world = make_communicator(co, env);
    s.rank = s.world->rank();
    s.world_size = s.world->size();
    MOE_CHECK(config_.parallel.data_parallel_size == 0 || config_.parallel.data_parallel_size == s.world_size,
              "parallel.data_parallel_size = ", config_.parallel.data_parallel_size, " but the world has ",
              s.world_size, " processes (WORLD_SIZE); set it to ", s.world_size, " or 0");
    check_same_on_all_ranks(*s.world, config_.to_toml(), "configuration");
    s.groups = make_parallel_groups(s.world, static_cast<int>(config_.parallel.expert_parallel_size));
  }
  fs::create_directories(config_.run_dir);
  init_logging(parse_log_level(config_.log_level),
               s.writer() ? (fs::path(config_.run_dir) / "train.log").string() : std::string(), s.rank);
  if (s.world)
    info("[parallel] ", s.world_size, " processes over ", config_.parallel.backend, " (", env.source,
         "): expert-parallel size ", s.groups.expert_parallel_size(), ", data-parallel size ", s.world_size);
  s.tty = ::isatty(STDERR_FILENO) != 0 && s.writer();
  s.device = parse_device(config_.train.device);
  if (s.world && s.device.is_cuda()) {
    MOE_CHECK(!s.device.has_index(), "train.device = ", config_.train.device, " in a multi-process run: use 'cuda' "
              "(each rank takes cuda:LOCAL_RANK)");
    s.device = at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(env.local_rank));
  }
  s.bf16 = config_.train.precision == "bf16";
  if (config_.train.threads > 0) at::set_num_threads(static_cast<int>(config_.train.threads));

  std::string resume_path;
  std::unique_ptr<OpenCheckpoint> resumed;
  if (!resume_from.empty()) {
    if (resume_from == "latest") {
      auto list = list_step_checkpoints(config_.run_dir);
      MOE_CHECK(!list.empty(), "--resume: no checkpoint-<step>.moeckpt in ", config_.run_dir);
      resume_path = list.back().second;
    } else {
      resume_path = resume_from;
    }
    // This process's experts: its expert-parallel shard of every MoE layer.
    const auto shard = expert_shard(config_.model.moe.num_experts, s.groups.expert.get(), "parallel.expert_parallel_size");
    resumed = open_checkpoint(resume_path, s.device, [shard](int64_t id) {
      return id >= shard.first && id < shard.first + shard.count;
    });
    MOE_CHECK(resumed->is_sharded || !s.world, "--resume: ", resume_path,
              " was written by a single-process run; a multi-process run resumes from the sharded checkpoints of "
              "a multi-process run (any world size)");
    // The experiment must be the same one; schedule and reporting keys may change.
    auto mine = config_fields(config_);
    auto theirs = config_fields(resumed->config);
    for (size_t i = 0; i < mine.size(); ++i) {
      if (mine[i].get() == theirs[i].get() || informational_on_resume(mine[i].key)) continue;
      MOE_CHECK(!must_match_on_resume(mine[i].key), "--resume: ", mine[i].key, " is ", mine[i].get(),
                " but the checkpoint ", resume_path, " was trained with ", theirs[i].get());
      log_warn(detail::concat("[resume] ", mine[i].key, " changed from ", theirs[i].get(), " to ", mine[i].get(),
                              ": the run will differ from an uninterrupted one"));
    }
  } else {
    auto existing = list_step_checkpoints(config_.run_dir);
    MOE_CHECK(existing.empty(), "run_dir ", config_.run_dir, " already holds checkpoints (", existing.back().second,
              "); pass --resume to continue that run, or choose another run_dir");
  }
  // Temporary files of checkpoint writes that a crash interrupted are never valid; remove them.
  for (const auto& entry : fs::directory_iterator(config_.run_dir)) {
    if (!s.writer()) break;
    if (entry.path().filename().string().find(".moeckpt.tmp.") == std::string::npos) continue;
    log_warn(detail::concat("[checkpoint] removing ", entry.path().string(), " (left by an interrupted write)"));
    fs::remove(entry.path());
  }

  torch::manual_seed(static_cast<uint64_t>(config_.train.seed));
  // Rank 0 builds the corpus and tokenizer caches first; the others then reuse them.
  if (s.world && !s.writer()) s.world->barrier();
  data_ = load_translation_data(config_, resumed ? &resumed->tokenizer : nullptr);
  if (s.world && s.writer()) s.world->barrier();
  auto model_options = config_.model;
  if (s.world && s.groups.expert_parallel_size() > 1) model_options.moe.expert_group = s.groups.expert;
  model_options.vocab_size = data_.tokenizer.vocab_size();
  model_options.padding_idx = SentencePieceTokenizer::kPad;
  model_ = TransformerModel(model_options);
  model_->to(s.device);
  if (s.world) {
    // Same seed, same initial values; the broadcast makes it a guarantee: replicated parameters from
    // world rank 0, experts from the first rank holding them.
    torch::NoGradGuard no_grad;
    std::vector<std::pair<std::string, at::Tensor>> named;
    for (auto& p : model_->named_parameters()) {
      named.emplace_back(p.key(), p.value());
      auto t = p.value().detach();
      if (expert_id_of(p.key()) < 0) {
        s.world->broadcast(t, 0);
      } else {
        s.groups.expert_data->broadcast(t, 0);
      }
    }
    s.sync = std::make_unique<GradientSynchronizer>(named, s.groups, config_.parallel.bucket_mb);
    // From here each rank draws its own dropout masks and sampled experts.
    torch::manual_seed(static_cast<uint64_t>(config_.train.seed) + 1000003ULL * static_cast<uint64_t>(s.rank));
  }

  const auto& t = config_.train;
  s.optimizer = std::make_unique<torch::optim::AdamW>(model_->parameters(), torch::optim::AdamWOptions(t.warmup_init_lr)
                                                                                .betas({t.adam_beta1, t.adam_beta2})
                                                                                .eps(t.adam_eps)
                                                                                .weight_decay(t.weight_decay));
  s.schedule = InverseSqrtSchedule{t.lr, t.warmup, t.warmup_init_lr};
  BatcherOptions bo;
  bo.max_tokens = config_.data.max_tokens;
  bo.temperature = config_.data.temperature;
  bo.seed = static_cast<uint64_t>(t.seed);
  s.batcher = std::make_unique<TokenBatcher>(data_.train, bo);

  const fs::path metrics_path = fs::path(config_.run_dir) / "metrics.jsonl";
  if (!resume_path.empty()) {
    if (resumed->is_sharded) {
      load_sharded_checkpoint(resumed->sharded, resume_path);
    } else {
      load_checkpoint(resumed->archive, resume_path);
    }
    resumed.reset();
    // Step checkpoints after the resumed one belong to an abandoned continuation: remove them, so
    // pruning and a later --resume only see this run's history.
    if (s.world) s.world->barrier();  // every rank has read its files before any is removed
    for (const auto& [later_step, later_path] : list_step_checkpoints(config_.run_dir)) {
      if (later_step <= step_ || !s.writer()) continue;
      log_warn(detail::concat("[resume] removing ", later_path, " (after the resumed step ", step_, ")"));
      remove_checkpoint(later_path);
    }
    // Drop records of steps after the checkpoint (a crashed run may have logged them).
    std::ifstream in(s.writer() ? metrics_path : fs::path("/dev/null"));
    std::vector<std::string> keep;
    for (std::string line; std::getline(in, line);) {
      const auto pos = line.find("\"step\": ");
      if (pos == std::string::npos) continue;  // a line cut short by the crash
      char* end = nullptr;
      const long long logged_step = std::strtoll(line.c_str() + pos + 8, &end, 10);
      if (end == line.c_str() + pos + 8 || logged_step > step_) continue;
      keep.push_back(line);
    }
    in.close();
    if (s.writer()) {
      std::ofstream out(metrics_path, std::ios::trunc);
      for (const auto& l : keep) out << l << '\n';
    }
    info("[resume] continuing from ", resume_path, " at step ", step_);
  }
  s.metrics = std::make_unique<MetricsLog>(s.writer() ? metrics_path.string() : std::string("/dev/null"),
                                           /*append=*/!resume_path.empty());
  if (s.writer()) std::ofstream(fs::path(config_.run_dir) / "config.toml") << config_.to_toml();

  const auto params = model_->count_parameters();
  std::string moe_layers;
  for (const auto& n : model_->moe_layer_names()) moe_layers += (moe_layers.empty() ? "" : ", ") + n;
  info("[model] ", config_.model.moe.variant, ": ", params.total, " parameters (", params.expert, " in experts), ",
       config_.model.encoder_layers, "+", config_.model.decoder_layers, " layers, d=", config_.model.d_model,
       moe_layers.empty() ? std::string() : "; MoE layers: " + moe_layers);
}

// ---- one update ----------------------------------------------------------------------------------

StepRecord Trainer::train_step() {
  auto& s = *state_;
  const auto& t = config_.train;
  model_->train();
  std::vector<Batch> batches;
  int64_t total_tokens = 0;
  // Every rank draws the whole update's micro-batches (update_freq per rank) from the same batcher
  // and keeps every world_size-th one, so it knows the update's total target tokens without a
  // collective and W ranks with update_freq u see exactly the batches of one rank with u·W.
  for (int64_t i = 0; i < t.update_freq * s.world_size; ++i) {
    auto b = s.batcher->next();
    total_tokens += b.num_target_tokens;
    if (i % s.world_size == s.rank) batches.push_back(std::move(b));
  }
  MOE_CHECK(total_tokens > 0, "trainer: an update with no target tokens");
  s.optimizer->zero_grad();
  const bool thor = config_.model.moe.variant == "thor";
  const int64_t pad = SentencePieceTokenizer::kPad;
  StepRecord rec;
  rec.tokens = total_tokens;
  double loss_sum = 0, nll_sum = 0, aux = 0, consistency = 0;
  for (size_t bi = 0; bi < batches.size(); ++bi) {
    const auto& b = batches[bi];
    // The update's last backward: gradient buckets start their all-reduce as they become final.
    const auto arm_if_last = [&] {
      if (s.sync && bi + 1 == batches.size()) s.sync->arm();
    };
    const auto src = b.source.to(s.device), tin = b.target_input.to(s.device), tout = b.target_output.to(s.device);
    const double share = static_cast<double>(b.num_target_tokens) / static_cast<double>(total_tokens);
    const auto direction = direction_name(data_.directions[static_cast<size_t>(b.direction[0].item<int64_t>())]);
    auto forward = [&]() {
      if (!s.bf16) return model_->forward(src, tin);
      // bf16 autocast on CUDA: matmuls in bf16, reductions and softmax in fp32; restored on exit.
      struct AutocastScope {
        AutocastScope() {
          at::autocast::set_autocast_enabled(at::kCUDA, true);
          at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
          at::autocast::increment_nesting();
        }
        ~AutocastScope() {
          if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
          at::autocast::set_autocast_enabled(at::kCUDA, false);
        }
      } scope;
      return model_->forward(src, tin);
    };
    if (thor) {
      auto run_pass = [&]() {
        auto out = forward();
        auto ls = label_smoothed_cross_entropy(out.logits, tout, t.label_smoothing, pad);
        nll_sum += ls.nll.item<double>() / 2.0;
        s.add_stats(out.moe, direction);
        return PassResult{out.logits, ls.loss, out.aux_loss * share};
      };
      ConsistencyStepOptions co;
      co.alpha = config_.model.moe.thor_alpha;
      auto r = consistency_training_step(run_pass, tout.eq(pad), total_tokens, co);
      arm_if_last();
      r.loss.backward();
      loss_sum += (r.task_loss_a + r.task_loss_b).item<double>() / 2.0;
      consistency += r.consistency.item<double>();
    } else {
      auto out = forward();
      auto ls = label_smoothed_cross_entropy(out.logits, tout, t.label_smoothing, pad);
      auto loss = ls.loss / static_cast<double>(total_tokens) + out.aux_loss * share;
      arm_if_last();
      loss.backward();
      loss_sum += ls.loss.item<double>();
      nll_sum += ls.nll.item<double>();
      aux += out.aux_loss.item<double>() * share;
      s.add_stats(out.moe, direction);
    }
  }
  auto params = model_->parameters();
  if (s.sync) {
    s.sync->synchronize();
    rec.grad_norm = t.clip_norm > 0 ? s.sync->clip(t.clip_norm) : s.sync->global_norm();
    auto sums = at::tensor({loss_sum, nll_sum, aux, consistency}, at::kDouble);
    s.world->all_reduce(sums);
    loss_sum = sums[0].item<double>();
    nll_sum = sums[1].item<double>();
    aux = sums[2].item<double>();
    consistency = sums[3].item<double>();
  } else if (t.clip_norm > 0) {
    rec.grad_norm = torch::nn::utils::clip_grad_norm_(params, t.clip_norm);
  } else {
    std::vector<at::Tensor> norms;  // per-parameter norms, combined with one host read
    for (const auto& p : params)
      if (p.grad().defined()) norms.push_back(p.grad().detach().to(at::kDouble).norm());
    rec.grad_norm = norms.empty() ? 0.0 : at::stack(norms).norm().item<double>();
  }
  rec.lr = s.schedule.at(step_ + 1);
  for (auto& group : s.optimizer->param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(rec.lr);
  s.optimizer->step();
  ++step_;
  rec.step = step_;
  const double n = static_cast<double>(total_tokens);
  rec.loss = loss_sum / n;
  rec.nll = nll_sum / n;
  rec.aux = aux;
  rec.consistency = consistency / n;
  return rec;
}

// ---- reports -------------------------------------------------------------------------------------

void Trainer::report_moe_stats() {
  auto& s = *state_;
  if (s.moe.empty()) return;
  auto layers = Json::object();
  for (auto& [name, a] : s.moe) {
    const double calls = static_cast<double>(std::max<int64_t>(1, a.calls));
    auto total = a.tokens_per_expert.sum().item<double>();
    auto share = a.tokens_per_expert / std::max(1.0, total);
    std::vector<double> shares(share.data_ptr<double>(), share.data_ptr<double>() + share.numel());
    std::vector<int64_t> counts;
    for (double v : std::vector<double>(a.tokens_per_expert.data_ptr<double>(),
                                        a.tokens_per_expert.data_ptr<double>() + a.tokens_per_expert.numel()))
      counts.push_back(static_cast<int64_t>(v));
    std::ostringstream line;
    line << std::fixed << std::setprecision(1) << "[moe] step " << step_ << " " << name << ": load%";
    for (double v : shares) line << " " << v * 100;
    line << std::setprecision(2) << " | drop " << 100 * a.dropped / calls << "% | experts/token "
         << a.experts_per_token / calls << " | passes/token " << a.passes / calls;
    log_info(line.str());
    layers.set(name, Json::object()
                         .set("tokens_per_expert", Json(counts))
                         .set("drop_rate", a.dropped / calls)
                         .set("experts_per_token", a.experts_per_token / calls)
                         .set("passes_per_token", a.passes / calls));
  }
  auto languages = Json::object();
  for (auto& [direction, per_layer] : s.usage) {
    auto entry = Json::object();
    std::ostringstream line;
    line << "[moe] step " << step_ << " " << direction << " top experts:";
    for (auto& [layer, counts] : per_layer) {
      auto share = counts / std::max(1.0, counts.sum().item<double>());
      entry.set(layer, Json(std::vector<double>(share.data_ptr<double>(), share.data_ptr<double>() + share.numel())));
      auto top = share.topk(std::min<int64_t>(2, share.numel()));
      line << " " << layer << "=";
      for (int64_t i = 0; i < std::get<1>(top).numel(); ++i)
        line << (i ? "," : "") << std::get<1>(top)[i].item<int64_t>() << "("
             << std::lround(100 * std::get<0>(top)[i].item<double>()) << "%)";
    }
    log_info(line.str());
    languages.set(direction, entry);
  }
  s.metrics->write(
      Json::object().set("type", "moe").set("step", step_).set("layers", layers).set("language_usage", languages));
  s.moe.clear();
  s.usage.clear();
}

// ---- validation ----------------------------------------------------------------------------------

ValidationResult Trainer::validate() {
  auto& s = *state_;
  model_->eval();
  torch::NoGradGuard no_grad;
  SameDrawsOnAllRanks draws(s.world != nullptr, config_.train.seed, step_, s.device);
  ValidationResult r;
  double loss = 0, nll = 0, tokens = 0;
  std::map<std::string, double> ept_sum, ept_weight;
  std::map<std::string, std::map<std::string, at::Tensor>> usage;  // layer -> direction -> counts
  for (size_t d = 0; d < data_.directions.size(); ++d) {
    const auto name = direction_name(data_.directions[d]);
    double dl = 0, dt = 0;
    for (const auto& b : make_eval_batches(data_.valid[d], config_.data.max_tokens)) {
      auto out = model_->forward(b.source.to(s.device), b.target_input.to(s.device));
      auto ls = label_smoothed_cross_entropy(out.logits, b.target_output.to(s.device), config_.train.label_smoothing,
                                             SentencePieceTokenizer::kPad);
      dl += ls.loss.item<double>();
      nll += ls.nll.item<double>();
      dt += static_cast<double>(ls.num_tokens);
      for (const auto& st : out.moe) {
        const double w = static_cast<double>(st.stats.num_tokens);
        ept_sum[st.name] += st.stats.experts_per_token.item<double>() * w;
        ept_weight[st.name] += w;
        auto c = st.stats.tokens_per_expert.to(at::kCPU, at::kDouble);
        auto& u = usage[st.name][name];
        u = u.defined() ? u + c : c;
      }
    }
    loss += dl;
    tokens += dt;
    r.loss_per_direction[name] = dt > 0 ? dl / dt : 0.0;
  }
  r.loss = tokens > 0 ? loss / tokens : 0.0;
  r.nll = tokens > 0 ? nll / tokens : 0.0;
  if (s.world) {
    // Every rank computed the same batches; rank 0's numbers decide (best checkpoint) everywhere, so
    // that a last-bit difference cannot send the ranks down different paths.
    auto v = at::tensor({r.loss, r.nll}, at::kDouble);
    s.world->broadcast(v, 0);
    r.loss = v[0].item<double>();
    r.nll = v[1].item<double>();
  }
  for (const auto& [layer, w] : ept_weight) r.experts_per_token[layer] = ept_sum[layer] / std::max(1.0, w);
  s.last_experts_per_token = r.experts_per_token;
  s.last_validation_step = step_;
  // Heatmaps: one per MoE layer, rows = directions.
  if (!usage.empty() && s.writer()) {
    const fs::path dir = fs::path(config_.run_dir) / "heatmaps";
    fs::create_directories(dir);
    for (const auto& [layer, per_direction] : usage) {
      std::vector<std::string> labels;
      std::vector<std::vector<double>> rows;
      for (const auto& [direction, counts] : per_direction) {
        labels.push_back(direction);
        rows.emplace_back(counts.data_ptr<double>(), counts.data_ptr<double>() + counts.numel());
      }
      std::ofstream(dir / ("step" + std::to_string(step_) + "-" + layer + ".svg")) << expert_usage_svg(
          config_.model.moe.variant + " " + layer + ", validation step " + std::to_string(step_), labels, rows);
    }
  }
  auto per_dir = Json::object();
  for (const auto& [k, v] : r.loss_per_direction) per_dir.set(k, v);
  auto ept = Json::object();
  for (const auto& [k, v] : r.experts_per_token) ept.set(k, v);
  if (s.metrics)
    s.metrics->write(Json::object()
                         .set("type", "valid")
                         .set("step", step_)
                         .set("loss", r.loss)
                         .set("nll", r.nll)
                         .set("ppl", std::exp(r.nll))
                         .set("loss_per_direction", per_dir)
                         .set("experts_per_token", ept));
  info("[valid] step ", step_, ": loss ", r.loss, " ppl ", std::exp(r.nll));
  return r;
}

// ---- training loop -------------------------------------------------------------------------------

void Trainer::train() {
  auto& s = *state_;
  const auto& t = config_.train;
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  auto last_log = start;
  int64_t tokens_since_log = 0, steps_this_session = 0;
  double loss_window = 0, nll_window = 0;
  int64_t window_steps = 0;
  const bool is_moe = config_.model.moe.is_moe();
  info("[train] ", step_ == 0 ? "starting" : "resuming", " at step ", step_, " of ", t.max_steps,
       t.max_minutes > 0 ? detail::concat(" (budget ", t.max_minutes, " min)") : std::string());
  while (step_ < t.max_steps) {
    const double elapsed = s.elapsed_before + std::chrono::duration<double>(clock::now() - start).count();
    bool out_of_time = t.max_minutes > 0 && elapsed >= t.max_minutes * 60.0;
    if (s.world && t.max_minutes > 0) {
      // The ranks' clocks differ: stop when any of them is out of time, all at the same step.
      auto flag = at::tensor({static_cast<int64_t>(out_of_time)}, at::kLong);
      s.world->all_reduce(flag, ReduceOp::kMax);
      out_of_time = flag.item<int64_t>() != 0;
    }
    if (out_of_time) {
      info("[train] stopping at step ", step_, ": the ", t.max_minutes, "-minute budget is spent");
      break;
    }
    auto rec = train_step();
    ++steps_this_session;
    history_.push_back(rec);
    tokens_since_log += rec.tokens;
    loss_window += rec.loss;
    nll_window += rec.nll;
    ++window_steps;
    if (step_ % t.log_every == 0 || step_ == t.max_steps) {
      const auto now = clock::now();
      const double dt = std::chrono::duration<double>(now - last_log).count();
      const double session = std::chrono::duration<double>(now - start).count();
      const double tps = static_cast<double>(tokens_since_log) / std::max(dt, 1e-9);
      double eta = session / static_cast<double>(steps_this_session) * static_cast<double>(t.max_steps - step_);
      double fraction = static_cast<double>(step_) / static_cast<double>(t.max_steps);
      if (t.max_minutes > 0) {
        const double budget = t.max_minutes * 60.0, spent = s.elapsed_before + session;
        eta = std::min(eta, budget - spent);
        fraction = std::max(fraction, spent / budget);
      }
      const double loss = loss_window / static_cast<double>(window_steps),
                   nll = nll_window / static_cast<double>(window_steps);
      const auto line = progress_line(step_, t.max_steps, loss, std::exp(nll), rec.lr, tps, eta, 24, fraction);
      if (s.tty) {
        std::fprintf(stderr, "\r%s\033[K", line.c_str());
        std::fflush(stderr);
      } else {
        log_info("[train] " + line);
      }
      s.metrics->write(Json::object()
                           .set("type", "train")
                           .set("step", step_)
                           .set("loss", loss)
                           .set("nll", nll)
                           .set("ppl", std::exp(nll))
                           .set("last_loss", rec.loss)
                           .set("aux", rec.aux)
                           .set("consistency", rec.consistency)
                           .set("lr", rec.lr)
                           .set("grad_norm", rec.grad_norm)
                           .set("tokens", rec.tokens)
                           .set("tokens_per_s", tps)
                           .set("elapsed_s", s.elapsed_before + session));
      tokens_since_log = 0;
      loss_window = nll_window = 0;
      window_steps = 0;
      last_log = now;
    }
    const bool validate_now = step_ % t.validate_every == 0;
    const bool checkpoint_now = step_ % t.checkpoint_every == 0;
    if (s.tty && (validate_now || checkpoint_now || (is_moe && step_ % t.stats_every == 0))) std::fprintf(stderr, "\n");
    if (is_moe && step_ % t.stats_every == 0) report_moe_stats();
    s.session_seconds = std::chrono::duration<double>(clock::now() - start).count();
    if (validate_now) {
      auto v = validate();
      const bool best = v.loss < s.best_valid;
      if (best) s.best_valid = v.loss;
      save_checkpoint(best);
    } else if (checkpoint_now) {
      save_checkpoint(false);
    }
  }
  if (s.tty) std::fprintf(stderr, "\n");
  s.session_seconds = std::chrono::duration<double>(clock::now() - start).count();
  if (s.last_checkpoint_step != step_) {
    bool best = false;
    if (s.last_validation_step != step_) {
      auto v = validate();
      best = v.loss < s.best_valid;
      if (best) s.best_valid = v.loss;
    }
    save_checkpoint(best);
  }
  s.elapsed_before += s.session_seconds;
  s.session_seconds = 0;
}

// ---- checkpoints ---------------------------------------------------------------------------------

std::string Trainer::checkpoint_payload() {
  auto& s = *state_;
  torch::serialize::OutputArchive archive;
  torch::serialize::OutputArchive model_archive, optimizer_archive;
  model_->save(model_archive);
  s.optimizer->save(optimizer_archive);
  archive.write("model", model_archive);
  archive.write("optimizer", optimizer_archive);
  archive.write("format", at::tensor(kCheckpointFormat, at::kLong));
  archive.write("step", at::tensor(step_, at::kLong));
  archive.write("rng_cpu", at::detail::getDefaultCPUGenerator().get_state());
  if (s.device.is_cuda()) archive.write("rng_cuda", at::globalContext().defaultGenerator(s.device).get_state());
  archive.write("batcher", batcher_state_tensor(*s.batcher));
  archive.write("config", string_tensor(config_.to_toml()));
  archive.write("tokenizer", string_tensor(data_.tokenizer.serialized()));
  archive.write("best_valid", at::tensor(s.best_valid, at::kDouble));
  archive.write("elapsed_s", at::tensor(s.elapsed_before + s.session_seconds, at::kDouble));
  std::string bytes;
  archive.save_to([&bytes](const void* data, size_t size) {
    bytes.append(static_cast<const char*>(data), size);
    return size;
  });
  return bytes;
}

void Trainer::save_checkpoint(bool best) {
  auto& s = *state_;
  if (s.world) {
    save_sharded_checkpoint(best);
    return;
  }
  const auto payload = checkpoint_payload();
  const auto path = step_checkpoint_path(config_.run_dir, step_);
  write_checkpoint_file(path, payload);
  remove_stale_shards(path, 0);  // a multi-process run may have left shards under these names
  if (best) {
    const auto best_path = (fs::path(config_.run_dir) / "best.moeckpt").string();
    write_checkpoint_file(best_path, payload);
    remove_stale_shards(best_path, 0);
  }
  s.last_checkpoint_step = step_;
  auto list = list_step_checkpoints(config_.run_dir);
  while (static_cast<int64_t>(list.size()) > config_.train.keep_last) {
    remove_checkpoint(list.front().second);  // with its expert shards if a multi-process run wrote it
    list.erase(list.begin());
  }
  info("[checkpoint] step ", step_, " -> ", path, best ? " (best so far)" : "");
}

// Multi-process runs: the model and the optimizer's moments by name, expert entries in one shard per
// expert-parallel position (moe/train/sharded_state.h), plus what a translation needs (config,
// tokenizer, step) in the shared file. Loads with any world size (load_model_checkpoint).
void Trainer::save_sharded_checkpoint(bool best) {
  auto& s = *state_;
  NamedState state = module_state(*model_);
  for (const auto& p : model_->named_parameters()) {
    auto it = s.optimizer->state().find(p.value().unsafeGetTensorImpl());
    if (it == s.optimizer->state().end()) continue;
    auto& st = static_cast<torch::optim::AdamWParamState&>(*it->second);
    state["optimizer." + p.key() + ".exp_avg"] = st.exp_avg();
    state["optimizer." + p.key() + ".exp_avg_sq"] = st.exp_avg_sq();
    state["optimizer." + p.key() + ".step"] = at::tensor(st.step(), at::kLong);
  }
  state["trainer.format"] = at::tensor(kCheckpointFormat, at::kLong);
  state["trainer.step"] = at::tensor(step_, at::kLong);
  state["trainer.config"] = string_tensor(config_.to_toml());
  state["trainer.tokenizer"] = string_tensor(data_.tokenizer.serialized());
  state["trainer.best_valid"] = at::tensor(s.best_valid, at::kDouble);
  state["trainer.elapsed_s"] = at::tensor(s.elapsed_before + s.session_seconds, at::kDouble);
  state["trainer.batcher"] = batcher_state_tensor(*s.batcher);  // the same on every rank
  // Every rank's generator (dropout, sampled experts): [W, state bytes], restored per rank when the
  // world size is unchanged.
  state["trainer.rng_cpu"] = s.world->all_gather(at::detail::getDefaultCPUGenerator().get_state());
  if (s.device.is_cuda())
    state["trainer.rng_cuda"] = s.world->all_gather(at::globalContext().defaultGenerator(s.device).get_state());
  const auto prefix = (fs::path(config_.run_dir) / ("checkpoint-" + std::to_string(step_))).string();
  const auto tag = "step " + std::to_string(step_);
  save_sharded_state(prefix, state, s.groups, tag);
  if (best) save_sharded_state((fs::path(config_.run_dir) / "best").string(), state, s.groups, tag);
  s.last_checkpoint_step = step_;
  if (s.writer()) {
    remove_stale_shards(prefix + ".moeckpt", s.groups.expert_parallel_size());
    if (best) remove_stale_shards((fs::path(config_.run_dir) / "best.moeckpt").string(), s.groups.expert_parallel_size());
    auto list = list_step_checkpoints(config_.run_dir);
    while (static_cast<int64_t>(list.size()) > config_.train.keep_last) {
      remove_checkpoint(list.front().second);
      list.erase(list.begin());
    }
  }
  s.world->barrier();
  info("[checkpoint] step ", step_, " -> ", prefix, ".moeckpt + ", s.groups.expert_parallel_size(),
       " expert shard(s)", best ? " (best so far)" : "");
}

TransformerModel Trainer::gathered_model() {
  auto& s = *state_;
  const int P = s.groups.expert_parallel_size();
  if (P == 1) return model_;  // every expert is here already
  // Collective over each expert group, in the model's registration order (the same on every rank).
  NamedState state = module_state(*model_);
  const auto shard = expert_shard(config_.model.moe.num_experts, s.groups.expert.get(), "parallel.expert_parallel_size");
  for (const auto& p : model_->named_parameters()) {
    const int64_t id = expert_id_of(p.key());
    if (id < 0) continue;
    auto all = s.groups.expert->all_gather(p.value().detach().contiguous());  // [P, ...]
    for (int q = 0; q < P; ++q) state[with_expert_id(p.key(), q * shard.count + (id - shard.first))] = all[q];
  }
  if (!s.writer()) return model_;
  // Building a model draws initial values: keep the run's random streams untouched.
  auto generator = at::detail::getDefaultCPUGenerator();
  const auto saved = generator.get_state();
  auto options = config_.model;
  options.vocab_size = data_.tokenizer.vocab_size();
  options.padding_idx = SentencePieceTokenizer::kPad;
  options.moe.expert_group = nullptr;
  TransformerModel full(options);
  generator.set_state(saved);
  full->to(s.device);
  load_module_state(*full, state, "the gathered experts");
  full->eval();
  return full;
}

void Trainer::load_sharded_checkpoint(const NamedState& state, const std::string& path) {
  auto& s = *state_;
  load_module_state(*model_, state, path);
  // AdamW moments by parameter name: this process's shard of them, whatever the writer's layout.
  int64_t restored = 0;
  for (const auto& p : model_->named_parameters()) {
    const auto key = "optimizer." + p.key();
    auto avg = state.find(key + ".exp_avg");
    if (avg == state.end()) continue;
    auto st = std::make_unique<torch::optim::AdamWParamState>();
    st->step(sharded_entry(state, key + ".step", path).item<int64_t>());
    st->exp_avg(avg->second.to(p.value().device(), p.value().scalar_type()).clone());
    st->exp_avg_sq(sharded_entry(state, key + ".exp_avg_sq", path).to(p.value().device(), p.value().scalar_type()).clone());
    s.optimizer->state()[p.value().unsafeGetTensorImpl()] = std::move(st);
    ++restored;
  }
  MOE_CHECK(restored > 0 || sharded_entry(state, "trainer.step", path).item<int64_t>() == 0, "checkpoint ", path,
            " has no optimizer state although it was written at step ",
            sharded_entry(state, "trainer.step", path).item<int64_t>());
  step_ = sharded_entry(state, "trainer.step", path).item<int64_t>();
  restore_batcher_state(*s.batcher, sharded_entry(state, "trainer.batcher", path), path);
  s.best_valid = sharded_entry(state, "trainer.best_valid", path).item<double>();
  s.elapsed_before = sharded_entry(state, "trainer.elapsed_s", path).item<double>();
  const auto rng = sharded_entry(state, "trainer.rng_cpu", path);
  auto generator = at::detail::getDefaultCPUGenerator();
  if (rng.size(0) == s.world_size) {
    generator.set_state(rng[s.rank].clone());  // a tensor of its own: set_state reads from offset 0
    auto cuda = state.find("trainer.rng_cuda");
    if (s.device.is_cuda() && cuda != state.end()) {
      auto g = at::globalContext().defaultGenerator(s.device);
      g.set_state(cuda->second[s.rank].clone());
    }
  } else {
    // Another world size: the random streams cannot continue; start new ones per rank.
    const auto seed = static_cast<uint64_t>(config_.train.seed) * 7919ULL + static_cast<uint64_t>(step_) * 104729ULL +
                      static_cast<uint64_t>(s.rank);
    generator.set_current_seed(seed);
    if (s.device.is_cuda()) {
      auto g = at::globalContext().defaultGenerator(s.device);
      g.set_current_seed(seed);
    }
    log_warn(detail::concat("[resume] ", path, " was written by ", rng.size(0), " process(es), this run has ",
                            s.world_size, ": random streams restart (dropout and sampled experts differ from an "
                            "uninterrupted run; parameters, optimizer and data order continue exactly)"));
  }
  s.last_checkpoint_step = s.last_validation_step = step_;
}

void Trainer::load_checkpoint(torch::serialize::InputArchive& archive, const std::string& path) {
  auto& s = *state_;
  torch::serialize::InputArchive model_archive, optimizer_archive;
  MOE_CHECK(archive.try_read("model", model_archive) && archive.try_read("optimizer", optimizer_archive), "checkpoint ",
            path, " lacks the model or optimizer state");
  model_->load(model_archive);
  s.optimizer->load(optimizer_archive);
  step_ = read_tensor(archive, "step", path).item<int64_t>();
  {
    auto generator = at::detail::getDefaultCPUGenerator();
    generator.set_state(read_tensor(archive, "rng_cpu", path).cpu());
  }
  at::Tensor cuda_state;
  if (s.device.is_cuda() && archive.try_read("rng_cuda", cuda_state)) {
    auto generator = at::globalContext().defaultGenerator(s.device);
    generator.set_state(cuda_state.cpu());
  }
  restore_batcher_state(*s.batcher, read_tensor(archive, "batcher", path), path);
  s.best_valid = read_tensor(archive, "best_valid", path).item<double>();
  s.elapsed_before = read_tensor(archive, "elapsed_s", path).item<double>();
  s.last_checkpoint_step = s.last_validation_step = step_;
}

LoadedModel load_model_checkpoint(const std::string& path, const std::string& device) {
  const auto dev = parse_device(device);
  auto opened = open_checkpoint(path, dev);
  auto& archive = opened->archive;
  LoadedModel out;
  out.config = opened->config;
  out.tokenizer = opened->tokenizer;
  out.step = opened->step;
  auto options = out.config.model;
  options.vocab_size = out.tokenizer.vocab_size();
  options.padding_idx = SentencePieceTokenizer::kPad;
  out.model = TransformerModel(options);  // every expert in this process
  out.model->to(dev);
  if (opened->is_sharded) {
    load_module_state(*out.model, opened->sharded, path);  // a multi-process run's checkpoint
  } else {
    torch::serialize::InputArchive model_archive;
    MOE_CHECK(archive.try_read("model", model_archive), "checkpoint ", path, " has no model state");
    out.model->load(model_archive);
  }
  out.model->eval();
  return out;
}

// ---- evaluation ----------------------------------------------------------------------------------

EvaluationResult Trainer::evaluate() {
  auto& s = *state_;
  EvaluationResult result;
  if (s.last_validation_step != step_ || s.last_experts_per_token.empty()) validate();
  SameDrawsOnAllRanks draws(s.world != nullptr, config_.train.seed, step_ + 1, s.device);
  // Beam search stops when its hypotheses finish, a data-dependent number of decoder steps; under
  // expert parallelism every rank would have to take the same steps. Rank 0 decodes alone instead,
  // with every expert gathered into one model (the others only take part in the gathering).
  TransformerModel decoder = s.world ? gathered_model() : model_;
  if (s.world && !s.writer()) {
    result.parameters = model_->count_parameters(result.experts_per_token);
    return result;
  }
  result.experts_per_token = s.last_experts_per_token;
  result.parameters = model_->count_parameters(result.experts_per_token);
  TranslateOptions to;
  to.search.beam = config_.eval.beam;
  to.search.lenpen = config_.eval.lenpen;
  to.search.max_len_a = config_.eval.max_len_a;
  to.search.max_len_b = config_.eval.max_len_b;
  to.max_tokens = config_.eval.max_tokens;
  to.max_length = config_.data.max_length;
  auto directions = Json::object();
  for (size_t d = 0; d < data_.directions.size(); ++d) {
    const auto& text = data_.eval_text[d];
    DirectionResult r;
    r.source = data_.directions[d].first;
    r.target = data_.directions[d].second;
    r.sentences = static_cast<int64_t>(text.source.size());
    const auto start = std::chrono::steady_clock::now();
    auto hyps = translate(decoder, data_.tokenizer, "<2" + r.target + ">", text.source, to);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    r.hypothesis_file = (fs::path(config_.run_dir) / ("hyp." + r.source + "-" + r.target + ".txt")).string();
    const auto reference_file = (fs::path(config_.run_dir) / ("ref." + r.source + "-" + r.target + ".txt")).string();
    for (const auto& [file, lines] :
         {std::make_pair(r.hypothesis_file, static_cast<const std::vector<std::string>*>(&hyps)),
          std::make_pair(reference_file, &text.target)}) {
      if (!s.writer()) break;
      std::ofstream out(file);
      for (const auto& line : *lines) out << line << '\n';
      MOE_CHECK(out.good(), "evaluate: cannot write ", file);
    }
    const RefStreams refs{text.target};
    BleuOptions bo;
    ChrFOptions co, cpp;
    cpp.word_order = 2;
    r.bleu = corpus_bleu(hyps, refs, bo).score;
    r.chrf2 = corpus_chrf(hyps, refs, co).score;
    r.chrf2pp = corpus_chrf(hyps, refs, cpp).score;
    r.bleu_signature = bo.signature(1);
    r.chrf_signature = co.signature(1);
    r.chrfpp_signature = cpp.signature(1);
    info("[eval] ", r.source, "-", r.target, ": BLEU ", std::round(r.bleu * 100) / 100, " chrF2 ",
         std::round(r.chrf2 * 100) / 100, " chrF2++ ", std::round(r.chrf2pp * 100) / 100, " (", r.sentences,
         " sentences, ", std::round(seconds * 10) / 10, " s)");
    directions.set(r.source + "-" + r.target, Json::object()
                                                  .set("bleu", r.bleu)
                                                  .set("chrf2", r.chrf2)
                                                  .set("chrf2pp", r.chrf2pp)
                                                  .set("sentences", r.sentences)
                                                  .set("hypothesis_file", r.hypothesis_file)
                                                  .set("bleu_signature", r.bleu_signature)
                                                  .set("chrf2_signature", r.chrf_signature)
                                                  .set("chrf2pp_signature", r.chrfpp_signature)
                                                  .set("decode_seconds", seconds));
    result.directions.push_back(r);
  }
  auto ept = Json::object();
  for (const auto& [k, v] : result.experts_per_token) ept.set(k, v);
  const auto& p = result.parameters;
  auto doc = Json::object()
                 .set("variant", config_.model.moe.variant)
                 .set("step", step_)
                 .set("train_minutes", (s.elapsed_before + s.session_seconds) / 60.0)
                 .set("eval_split", config_.eval.split)
                 .set("beam", config_.eval.beam)
                 .set("directions", directions)
                 .set("model", Json::object()
                                   .set("total_parameters", p.total)
                                   .set("expert_parameters", p.expert)
                                   .set("active_parameters", p.active)
                                   .set("forward_flops_per_token", p.forward_flops_per_token)
                                   .set("experts_per_token", ept));
  if (s.writer()) std::ofstream(fs::path(config_.run_dir) / "results.json") << doc.dump(2) << "\n";
  s.metrics->write(Json::object().set("type", "eval").set("step", step_).set("results", doc));
  // The table.
  std::ostringstream table;
  table << "\n| direction | sentences | BLEU | chrF2 | chrF2++ |\n|---|---:|---:|---:|---:|\n"
        << std::fixed << std::setprecision(2);
  double bleu_sum = 0, chrf_sum = 0;
  for (const auto& r : result.directions) {
    table << "| " << r.source << "-" << r.target << " | " << r.sentences << " | " << r.bleu << " | " << r.chrf2 << " | "
          << r.chrf2pp << " |\n";
    bleu_sum += r.bleu;
    chrf_sum += r.chrf2;
  }
  const double nd = static_cast<double>(std::max<size_t>(1, result.directions.size()));
  table << "| mean | | " << bleu_sum / nd << " | " << chrf_sum / nd << " | |\n";
  if (!result.directions.empty())
    table << "BLEU: " << result.directions.front().bleu_signature
          << "\nchrF2: " << result.directions.front().chrf_signature
          << "\nchrF2++: " << result.directions.front().chrfpp_signature << "\n";
  table << std::setprecision(1) << "parameters: " << p.total / 1e6 << "M total, " << p.active / 1e6
        << "M active per token, " << p.forward_flops_per_token / 1e6 << " MFLOPs per token (forward)\n";
  log_info(table.str());
  info("[eval] results: ", (fs::path(config_.run_dir) / "results.json").string());
  return result;
}

}  // namespace moe
