// The translation trainer (see moe/train/trainer.h): set-up, the loop, one update, validation with
// early stopping, the final evaluation. Writing and resuming checkpoints: trainer_checkpoint.cpp.
#include "moe/train/trainer.h"

#include <ATen/ATen.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "autocast_scope.h"
#include "moe/core/error.h"
#include "moe/core/logging.h"
#include "moe/core/stop_request.h"
#include "moe/parallel/rendezvous.h"
#include "moe/train/checkpoint_file.h"
#include "moe/train/consistency.h"
#include "moe/train/label_smoothing.h"
#include "moe/train/random_state.h"
#include "moe/train/run_report.h"
#include "trainer_state.h"

namespace moe {
namespace fs = std::filesystem;

Trainer::~Trainer() = default;

Trainer::Trainer(RunConfig config, const std::string& resume_from, bool discard_later_checkpoints)
    : config_(std::move(config)), state_(new State), discard_later_(discard_later_checkpoints) {
  load_run_plugins(config_, "the configuration");
  config_.validate();
  auto& s = *state_;
  s.variant = variant_spec(config_.model.moe.variant);
  const auto env = read_distributed_env();
  CommunicatorOptions co;
  co.backend = config_.parallel.backend;
  co.timeout_s = config_.parallel.timeout_s;
  s.world = make_communicator(co, env);
  const int rank = s.world->rank(), world_size = s.world->size();
  MOE_CHECK(config_.parallel.data_parallel_size == 0 || config_.parallel.data_parallel_size == world_size,
            "parallel.data_parallel_size = ", config_.parallel.data_parallel_size, " but the world has ", world_size,
            " processes (WORLD_SIZE); set it to ", world_size, " or 0");
  check_same_on_all_ranks(*s.world, config_.to_toml(), "configuration");
  s.groups = make_parallel_groups(s.world, static_cast<int>(config_.parallel.expert_parallel_size));
  fs::create_directories(config_.run_dir);
  init_logging(parse_log_level(config_.log_level),
               s.writer() ? (fs::path(config_.run_dir) / "train.log").string() : std::string(), rank);
  if (world_size > 1)
    info("[parallel] ", world_size, " processes over ", config_.parallel.backend, " (", env.source,
         "): expert-parallel size ", s.groups.expert_parallel_size(), ", data-parallel size ", world_size);
  s.tty = ::isatty(STDERR_FILENO) != 0 && s.writer();
  s.device = parse_run_device(config_.train.device);
  if (world_size > 1 && s.device.is_cuda()) {
    MOE_CHECK(!s.device.has_index(), "train.device = ", config_.train.device,
              " in a multi-process run: use 'cuda' "
              "(each rank takes cuda:LOCAL_RANK)");
    s.device = at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(env.local_rank));
  }
  s.bf16 = config_.train.precision == "bf16";
  if (config_.train.threads > 0) at::set_num_threads(static_cast<int>(config_.train.threads));

  std::string resume_path;
  auto resumed = open_run_folder(resume_from, resume_path);

  seed_random_state(static_cast<uint64_t>(config_.train.seed), s.device);
  // Rank 0 builds the corpus and tokenizer caches first; the others then reuse them.
  if (!s.writer()) s.world->barrier();
  TranslationDataOptions data_options;
  data_options.eval_split = config_.eval.split;
  data_options.tokenizer_seed = static_cast<uint64_t>(config_.train.seed);
  data_options.tokenizer = resumed ? &resumed->tokenizer : nullptr;
  data_ = build_translation_data(config_.data, config_.tokenizer, data_options);
  if (s.writer()) s.world->barrier();
  model_ = TransformerModel(model_options_for(config_, data_.tokenizer), s.groups.expert);
  model_->to(s.device);
  // Same seed, same initial values; the broadcast makes it a guarantee: replicated parameters from
  // world rank 0, experts from the first rank holding them.
  std::vector<std::pair<std::string, at::Tensor>> named;
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model_->named_parameters()) {
      named.emplace_back(p.key(), p.value());
      auto t = p.value().detach();
      (expert_id_of(p.key()) < 0 ? s.world : s.groups.expert_data)->broadcast(t, 0);
    }
  }
  s.sync = std::make_unique<GradientSynchronizer>(named, s.groups, config_.parallel.bucket_mb);
  // From here each rank draws its own dropout masks and sampled experts.
  seed_random_state(static_cast<uint64_t>(config_.train.seed) + 1000003ULL * static_cast<uint64_t>(rank), s.device);
  s.optimizer = std::make_unique<Optimizer>(named, config_.train);
  BatcherOptions bo;
  bo.max_tokens = config_.data.max_tokens;
  bo.temperature = config_.data.temperature;
  bo.seed = static_cast<uint64_t>(config_.train.seed);
  PrefetchOptions po;
  po.depth = config_.data.prefetch >= 0 ? config_.data.prefetch : (s.device.is_cuda() ? 4 : 0);
  po.pin_memory = s.device.is_cuda();
  s.batcher = std::make_unique<BatchPrefetcher>(std::make_unique<TokenBatcher>(data_.train, bo), po);

  const auto metrics_path = (fs::path(config_.run_dir) / "metrics.jsonl").string();
  if (resumed) resume(*resumed, resume_path);
  if (resumed && s.writer()) MetricsLog::keep_steps_up_to(metrics_path, step_, set_aside_);
  resumed.reset();
  s.metrics = std::make_unique<MetricsLog>(s.writer() ? metrics_path : std::string("/dev/null"),
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
  const int rank = s.world->rank(), world_size = s.world->size();
  model_->train();
  std::vector<Batch> batches;
  int64_t total_tokens = 0;
  // Every rank draws the whole update's micro-batches (update_freq per rank) from the same batcher
  // and keeps every world_size-th one, so it knows the update's total target tokens without a
  // collective and W ranks with update_freq u see exactly the batches of one rank with u·W.
  for (int64_t i = 0; i < t.update_freq * world_size; ++i) {
    auto b = s.batcher->next();
    total_tokens += b.num_target_tokens;
    if (i % world_size == rank) batches.push_back(std::move(b));
  }
  MOE_CHECK(total_tokens > 0, "trainer: an update with no target tokens");
  s.optimizer->zero_grad();
  const int64_t pad = SentencePieceTokenizer::kPad;
  StepRecord rec;
  rec.tokens = total_tokens;
  // The update's sums stay on the device (float64) and are read once, after the last backward.
  const auto sum_options = at::TensorOptions().dtype(at::kDouble).device(s.device);
  at::Tensor loss_sum = at::zeros({}, sum_options), nll_sum = at::zeros({}, sum_options),
             aux = at::zeros({}, sum_options), consistency = at::zeros({}, sum_options);
  auto value = [](const at::Tensor& x) { return x.detach().to(at::kDouble); };
  for (size_t bi = 0; bi < batches.size(); ++bi) {
    const auto& b = batches[bi];
    // Page-locked on CUDA (the prefetcher): the copies are queued on the stream, the host goes on.
    const auto src = b.source.to(s.device, /*non_blocking=*/true),
               tin = b.target_input.to(s.device, /*non_blocking=*/true),
               tout = b.target_output.to(s.device, /*non_blocking=*/true);
    const double share = static_cast<double>(b.num_target_tokens) / static_cast<double>(total_tokens);
    const auto direction = direction_name(data_.directions[static_cast<size_t>(b.direction[0].item<int64_t>())]);
    auto forward = [&] {
      AutocastScope autocast(s.bf16);
      return model_->forward(src, tin);
    };
    at::Tensor loss;
    if (s.variant.two_pass) {
      auto run_pass = [&] {
        auto out = forward();
        auto ls = label_smoothed_cross_entropy(out.logits, tout, t.label_smoothing, pad);
        nll_sum += value(ls.nll) / 2.0;
        s.stats.add(out.moe, direction);
        return PassResult{out.logits, ls.loss, out.aux_loss * share};
      };
      ConsistencyStepOptions co;
      co.alpha = config_.model.moe.thor_alpha;
      auto r = consistency_training_step(run_pass, tout.eq(pad), total_tokens, co);
      loss = r.loss;
      loss_sum += value(r.task_loss_a + r.task_loss_b) / 2.0;
      consistency += value(r.consistency);
    } else {
      auto out = forward();
      auto ls = label_smoothed_cross_entropy(out.logits, tout, t.label_smoothing, pad);
      loss = ls.loss / static_cast<double>(total_tokens) + out.aux_loss * share;
      loss_sum += value(ls.loss);
      nll_sum += value(ls.nll);
      aux += value(out.aux_loss) * share;
      s.stats.add(out.moe, direction);
    }
    if (update_fault_hook() && update_fault_hook()(step_ + 1)) loss = loss * std::nan("");  // tests only
    // The update's last backward: gradient buckets start their all-reduce as they become final.
    if (bi + 1 == batches.size()) s.sync->arm();
    loss.backward();
  }
  s.sync->synchronize();
  // The step's one device-to-host read: the four sums and the two squared gradient sums together.
  auto read = at::cat({at::stack({loss_sum, nll_sum, aux, consistency}), s.sync->local_squares()}).cpu();
  rec.grad_norm = s.sync->norm_from_squares(read.narrow(0, 4, 2).clone());
  auto sums = read.narrow(0, 0, 4).clone();
  s.world->all_reduce(sums);
  const double n = static_cast<double>(total_tokens);
  rec.loss = sums[0].item<double>() / n;
  rec.nll = sums[1].item<double>() / n;
  rec.aux = sums[2].item<double>();
  rec.consistency = sums[3].item<double>() / n;
  rec.step = step_ + 1;
  // A non-finite loss or gradient: no update (every rank sees the same sums and norm, so they agree).
  rec.skipped = !std::isfinite(rec.loss) || !std::isfinite(rec.grad_norm) || !std::isfinite(rec.aux) ||
                !std::isfinite(rec.consistency);
  if (rec.skipped) {
    s.optimizer->zero_grad();
    return rec;
  }
  if (t.clip_norm > 0) s.sync->clip(t.clip_norm, rec.grad_norm);
  rec.lr = s.optimizer->step(step_ + 1);
  ++step_;
  return rec;
}

std::function<bool(int64_t)>& Trainer::update_fault_hook() {
  static std::function<bool(int64_t)> hook;
  return hook;
}

// ---- validation ----------------------------------------------------------------------------------

ValidationResult Trainer::validate() {
  auto& s = *state_;
  ValidationOptions vo;
  vo.max_tokens = config_.data.max_tokens;
  vo.label_smoothing = config_.train.label_smoothing;
  vo.seed = static_cast<uint64_t>(config_.train.seed);
  vo.step = step_;
  auto r = validate_translation(model_, data_, vo, s.device, *s.world);
  s.last_experts_per_token = r.experts_per_token;
  s.last_validation_step = step_;
  if (s.writer())
    write_usage_heatmaps((fs::path(config_.run_dir) / "heatmaps").string(), config_.model.moe.variant, step_, r.usage);
  Json per_dir = Json::object(), ept = Json::object();
  for (const auto& [k, v] : r.loss_per_direction) per_dir[k] = v;
  for (const auto& [k, v] : r.experts_per_token) ept[k] = v;
  if (s.metrics)
    s.metrics->write({{"type", "valid"},
                      {"step", step_},
                      {"loss", r.loss},
                      {"nll", r.nll},
                      {"ppl", std::exp(r.nll)},
                      {"loss_per_direction", per_dir},
                      {"experts_per_token", ept}});
  info("[valid] step ", step_, ": loss ", r.loss, " ppl ", std::exp(r.nll));
  if (s.writer()) write_run_report(config_.run_dir);
  return r;
}

bool Trainer::validate_and_track_best() {
  auto& s = *state_;
  const double loss = validate().loss;
  const bool best = loss < s.best_valid;
  if (best) {
    s.best_valid = loss;
    s.best_step = step_;
  }
  s.validations_without_improvement = best ? 0 : s.validations_without_improvement + 1;
  return best;
}

bool Trainer::patience_exhausted() {
  auto& s = *state_;
  const auto patience = config_.train.patience;
  if (patience <= 0 || s.validations_without_improvement < patience) return false;
  s.stop_reason = detail::concat("early stop: ", patience, " validations without improvement (best loss ", s.best_valid,
                                 " at step ", s.best_step, ")");
  log_warn(detail::concat("[train] ", s.stop_reason, "; stopping at step ", step_));
  s.metrics->write({{"type", "early_stop"},
                    {"step", step_},
                    {"patience", patience},
                    {"best_valid", s.best_valid},
                    {"best_step", s.best_step}});
  return true;
}

// ---- training loop -------------------------------------------------------------------------------

void Trainer::train() {
  auto& s = *state_;
  const auto& t = config_.train;
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  ProgressReport progress(t.max_steps, t.max_minutes, s.elapsed_before, s.tty);
  s.stop_reason = "train.max_steps reached";
  info("[train] ", step_ == 0 ? "starting" : "resuming", " at step ", step_, " of ", t.max_steps,
       t.max_minutes > 0 ? detail::concat(" (budget ", t.max_minutes, " min)") : std::string());
  while (step_ < t.max_steps) {
    const double elapsed = s.elapsed_before + std::chrono::duration<double>(clock::now() - start).count();
    // The ranks' clocks and signals differ: they agree on stopping, all at the same step.
    auto flags = at::tensor(std::vector<int64_t>{t.max_minutes > 0 && elapsed >= t.max_minutes * 60.0,
                                                 static_cast<int64_t>(stop_requested())});
    s.world->all_reduce(flags, ReduceOp::kMax);
    if (flags[1].item<int64_t>() >= 0) {
      progress.end_line();
      s.session_seconds = std::chrono::duration<double>(clock::now() - start).count();
      stop_on_request(static_cast<int>(flags[1].item<int64_t>()));
    }
    if (flags[0].item<int64_t>() != 0) {
      s.stop_reason = detail::concat("the ", t.max_minutes, "-minute budget is spent");
      info("[train] stopping at step ", step_, ": ", s.stop_reason);
      break;
    }
    const auto step_start = clock::now();
    auto rec = train_step();
    rec.seconds = std::chrono::duration<double>(clock::now() - step_start).count();
    progress.add(rec);
    if (rec.skipped) {
      count_skipped_update(rec);
      continue;
    }
    s.skipped_in_a_row = 0;
    history_.push_back(rec);
    if (step_ % t.log_every == 0 || step_ == t.max_steps) s.metrics->write(progress.report());
    const bool validate_now = step_ % t.validate_every == 0;
    const bool checkpoint_now = step_ % t.checkpoint_every == 0;
    const bool stats_now = config_.model.moe.is_moe() && step_ % t.stats_every == 0;
    if (validate_now || checkpoint_now || stats_now) progress.end_line();
    if (stats_now && !s.stats.empty()) s.metrics->write(s.stats.report(step_));
    s.session_seconds = std::chrono::duration<double>(clock::now() - start).count();
    if (validate_now) {
      save_checkpoint(validate_and_track_best());
      if (patience_exhausted()) break;
    } else if (checkpoint_now) {
      save_checkpoint(false);
    }
  }
  progress.end_line();
  s.session_seconds = std::chrono::duration<double>(clock::now() - start).count();
  if (s.last_checkpoint_step != step_) save_checkpoint(s.last_validation_step != step_ && validate_and_track_best());
  if (s.writer()) write_run_report(config_.run_dir);
  s.elapsed_before += s.session_seconds;
  s.session_seconds = 0;
}

void Trainer::count_skipped_update(const StepRecord& rec) {
  auto& s = *state_;
  ++s.skipped_in_a_row;
  ++s.skipped_total;
  log_warn(detail::concat("[train] update ", rec.step, ": non-finite loss ", rec.loss, " or gradient norm ",
                          rec.grad_norm, "; update skipped (", s.skipped_in_a_row, " in a row, ", s.skipped_total,
                          " in this run)"));
  s.metrics->write({{"type", "skipped"},
                    {"step", step_},
                    {"update", rec.step},
                    {"loss", rec.loss},
                    {"grad_norm", rec.grad_norm},
                    {"in_a_row", s.skipped_in_a_row},
                    {"total", s.skipped_total}});
  if (s.skipped_in_a_row < config_.train.max_skipped_updates) return;
  const auto list = list_step_checkpoints(config_.run_dir);
  MOE_THROW("[train] ", s.skipped_in_a_row, " updates in a row after step ", step_,
            " had a non-finite loss or gradient (train.max_skipped_updates = ", config_.train.max_skipped_updates,
            "); stopping. ",
            list.empty() ? std::string("No checkpoint was written yet")
                         : "The last good checkpoint is " + list.back().second + " (step " +
                               std::to_string(list.back().first) + ")",
            "; a smaller train.lr or train.clip_norm > 0 may help");
}

void Trainer::stop_on_request(int signal) {
  auto& s = *state_;
  std::string where = "no checkpoint was needed";
  if (step_ > 0 && s.last_checkpoint_step != step_) save_checkpoint(false);
  if (step_ > 0) where = "checkpoint " + step_checkpoint_path(config_.run_dir, step_);
  const auto message =
      detail::concat("stopped by ", stop_reason(signal), " at step ", step_, "; ", where, "; continue with --resume");
  log_warn("[train] " + message);
  throw Interrupted(message, signal);
}

// ---- evaluation ----------------------------------------------------------------------------------

EvaluationResult Trainer::evaluate() {
  auto& s = *state_;
  if (s.last_validation_step != step_ || s.last_experts_per_token.empty()) validate();
  ScopedSeed draws(static_cast<uint64_t>(config_.train.seed) * 1000003ULL + static_cast<uint64_t>(step_ + 1), s.device);
  // Beam search stops when its hypotheses finish, a data-dependent number of decoder steps; under
  // expert parallelism every rank would have to take the same steps. Rank 0 decodes alone instead,
  // with every expert gathered into one model (the others only take part in the gathering).
  TransformerModel decoder =
      gather_experts(model_, s.groups, model_options_for(config_, data_.tokenizer), config_.model.moe.num_experts);
  EvaluationContext context;
  context.variant = config_.model.moe.variant;
  context.step = step_;
  context.train_minutes = (s.elapsed_before + s.session_seconds) / 60.0;
  context.stop_reason = s.stop_reason;
  context.experts_per_token = s.last_experts_per_token;
  context.parameters = model_->count_parameters(context.experts_per_token);
  if (!s.writer()) {
    EvaluationResult result;
    result.parameters = context.parameters;
    return result;
  }
  context.out_dir = config_.run_dir;
  auto result = evaluate_translation(decoder, data_, config_.eval, config_.data.max_length, context);
  s.metrics->write({{"type", "eval"}, {"step", step_}, {"results", result.document}});
  write_run_report(config_.run_dir);
  return result;
}

}  // namespace moe
