// Run configuration: the one list of keys, TOML reading (toml++) and writing, validation (see
// moe/train/config.h).
#include "moe/train/config.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/toml_document.h"
#include "moe/core/error.h"
#include "moe/core/logging.h"
#include "moe/core/plugins.h"
#include "moe/train/schedule.h"

namespace moe {
namespace {

std::string section_of(const std::string& key) {
  const auto dot = key.find('.');
  return dot == std::string::npos ? "" : key.substr(0, dot);
}

const char* const kRouterTable = "moe.router.";

std::string join(const std::vector<std::string>& names, const std::string& sep = ", ") {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : sep) + n;
  return out;
}

// The router keys moe.<key>, generated from the router option list: set explicitly they go into
// model.moe.router; unset they show the variant's preset.
void add_router_fields(std::vector<ConfigField>& out, RunConfig& c) {
  RouterOptions scratch;
  for (const auto& f : router_option_fields(scratch)) {
    ConfigField field;
    field.key = "moe." + f.key;
    field.help = f.help;
    field.type = f.type;
    const std::string key = f.key;
    auto& settings = c.model.moe.router;
    field.set = [&settings, key](const std::string& text) { settings.set(key, text); };
    field.get = [&c, key]() -> std::string {
      if (c.model.moe.router.has(key)) return c.model.moe.router.get(key);
      auto resolved = c.model.moe.resolved_router_options(std::max<int64_t>(c.model.d_model, 1));
      for (const auto& g : router_option_fields(resolved))
        if (g.key == key) return g.get();
      return "";
    };
    field.is_set = [&settings, key] { return settings.has(key); };
    field.unset = [&settings, key] { settings.unset(key); };
    out.push_back(std::move(field));
  }
}

// The keys of every section but the router's, with their ranges.
std::vector<OptionField> plain_fields(RunConfig& c) {
  FieldList l;
  l.add("run_dir", c.run_dir, "folder for checkpoints, metrics.jsonl, results.json and hypotheses").rule([&c] {
    return c.run_dir.empty() ? std::string("a folder") : std::string();
  });
  l.add("log_level", c.log_level, "trace | debug | info | warn | error | off")
      .one_of({"trace", "debug", "info", "warn", "error", "off"});
  auto& d = c.data;
  l.add("data.corpus", d.corpus, "gettext (default corpus built from the system's message catalogs) | folder")
      .one_of({"gettext", "folder"});
  l.add("data.root", d.root, "folder corpus root (pair folders <src>-<tgt>/ or multi-way files)");
  l.add("data.languages", d.languages, "non-pivot languages, comma-separated");
  l.add("data.pivot", d.pivot, "pivot language (English)");
  l.add("data.directions", d.directions, "pivot-xx | xx-pivot | both | explicit list 'en-de,de-en'");
  l.add("data.max_train_pairs", d.max_train_pairs, "training pairs per direction (0 = all)").in(0, 1e9);
  l.add("data.max_valid_sentences", d.max_valid_sentences, "validation sentences per direction (0 = all)").in(0, 1e8);
  l.add("data.max_test_sentences", d.max_test_sentences, "test sentences per direction (0 = all)").in(0, 1e8);
  l.add("data.max_line_bytes", d.max_line_bytes, "pairs with a longer line are skipped and counted (0 = no limit)")
      .in(0, 1 << 20);
  l.add("data.max_length", d.max_length, "tokens per side; longer examples are skipped").in(3, 4096);
  l.add("data.temperature", d.temperature, "direction sampling temperature (1 = proportional)")
      .in(0, 1000, false, /*lo_open=*/true);
  l.add("data.max_tokens", d.max_tokens, "tokens per training micro-batch").in(3, 1 << 22);
  l.add("data.prefetch", d.prefetch,
        "training batches prepared ahead on a host thread (0 = none; -1 = auto: 4 on CUDA, 0 on the CPU, where "
        "the thread only competes with the step for cores)")
      .in(-1, 64);
  l.add("data.locale_root", d.locale_root, "gettext corpus: the locale folder to read");
  l.add("data.cache_dir", d.cache_dir, "built corpora and tokenizers (shared across runs)");
  auto& t = c.tokenizer;
  l.add("tokenizer.vocab_size", t.vocab_size, "SentencePiece vocabulary size (byte fallback needs >= 300)")
      .in(300, 1 << 20);
  l.add("tokenizer.model_type", t.model_type, "unigram | bpe").one_of({"unigram", "bpe"});
  l.add("tokenizer.character_coverage", t.character_coverage, "SentencePiece character coverage")
      .in(0, 1, false, /*lo_open=*/true);
  l.add("tokenizer.input_sentence_size", t.input_sentence_size, "sentences sampled to train the tokenizer").in(1, 1e9);
  // model.* and moe.* are checked by TransformerOptions::validate (the library's own rules).
  auto& m = c.model;
  l.add("model.d_model", m.d_model, "model width d");
  l.add("model.heads", m.heads, "attention heads");
  l.add("model.encoder_layers", m.encoder_layers, "encoder layers");
  l.add("model.decoder_layers", m.decoder_layers, "decoder layers");
  l.add("model.ffn_hidden", m.ffn_hidden, "dense FFN inner width");
  l.add("model.activation", m.activation, "relu | gelu | swiglu");
  l.add("model.dropout", m.dropout, "residual and embedding dropout");
  l.add("model.attention_dropout", m.attention_dropout, "dropout on attention probabilities");
  l.add("model.activation_dropout", m.activation_dropout, "dropout inside the FFN after the activation");
  l.add("model.pre_norm", m.pre_norm, "pre-LN (true) or post-LN (false)");
  l.add("model.max_positions", m.max_positions, "longest sequence");
  l.add("model.scale_embedding", m.scale_embedding, "multiply token embeddings by sqrt(d)");
  auto& e = c.model.moe;
  l.add("moe.variant", e.variant, join(builtin_variant_names(), " | ") + " | <a registered router>");
  l.add("moe.plugins", e.plugins, "router plugins to load first: shared libraries, comma-separated (--plugin)");
  l.add("moe.num_experts", e.num_experts, "experts per MoE layer");
  l.add("moe.expert_hidden", e.expert_hidden, "expert inner width (0 = model.ffn_hidden)");
  l.add("moe.every", e.every, "an MoE layer every N layers");
  l.add("moe.index_base", e.index_base, "1: layers 2,4,.. are MoE (SMoE, XMoE); 0: layers 0,2,.. (THOR)");
  l.add("moe.placement", e.placement, "encoder | decoder | both");
  l.add("moe.strata", e.strata, "smoe strata, e.g. '4,4'");
  l.add("moe.thor_alpha", e.thor_alpha, "consistency weight of two-pass variants (thor)");
  l.add("moe.aux_combine", e.aux_combine, "auto (the variant's) | sum | mean over MoE layers");
  auto& r = c.train;
  l.add("train.lr", r.lr, "peak learning rate").above(0);
  l.add("train.warmup", r.warmup, "warmup updates (inverse-sqrt schedule)").in(1, 1e9);
  l.add("train.warmup_init_lr", r.warmup_init_lr, "learning rate at step 0").at_least(0);
  l.add("train.adam_beta1", r.adam_beta1, "Adam beta1").in(0, 1, /*hi_open=*/true);
  l.add("train.adam_beta2", r.adam_beta2, "Adam beta2").in(0, 1, /*hi_open=*/true);
  l.add("train.adam_eps", r.adam_eps, "Adam epsilon").above(0);
  l.add("train.weight_decay", r.weight_decay, "decoupled weight decay").at_least(0);
  l.add("train.clip_norm", r.clip_norm, "gradient clipping norm (0 = off)").at_least(0);
  l.add("train.label_smoothing", r.label_smoothing, "label smoothing epsilon").in(0, 1, /*hi_open=*/true);
  l.add("train.update_freq", r.update_freq, "micro-batches per update (gradient accumulation)").in(1, 4096);
  l.add("train.max_steps", r.max_steps, "updates to train").in(1, 1e12);
  l.add("train.max_minutes", r.max_minutes, "wall-clock training budget in minutes (0 = none)").in(0, 1e7);
  l.add("train.seed", r.seed, "random seed").at_least(0);
  l.add("train.log_every", r.log_every, "progress and metrics every N updates").at_least(1);
  l.add("train.stats_every", r.stats_every, "MoE statistics every N updates").at_least(1);
  l.add("train.validate_every", r.validate_every, "validation every N updates").at_least(1);
  l.add("train.checkpoint_every", r.checkpoint_every, "checkpoint every N updates").at_least(1);
  l.add("train.keep_last", r.keep_last, "step checkpoints to keep").in(1, 10000);
  l.add("train.device", r.device, "cpu | cuda | cuda:N").rule([&r] {
    const auto& v = r.device;
    const bool index_ok = v.size() > 5 && v.size() <= 8 && v.compare(0, 5, "cuda:") == 0 &&
                          std::all_of(v.begin() + 5, v.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
    return v == "cpu" || v == "cuda" || index_ok ? std::string() : std::string("cpu, cuda or cuda:N");
  });
  l.add("train.precision", r.precision, "fp32 | bf16 (CUDA autocast)").one_of({"fp32", "bf16"});
  l.add("train.threads", r.threads, "intra-op threads (0 = LibTorch's default)").in(0, 1024);
  l.add("train.patience", r.patience, "early stopping: validations in a row without improvement (0 = never)")
      .in(0, 1000000);
  l.add("train.max_skipped_updates", r.max_skipped_updates,
        "updates in a row with a non-finite loss or gradient (each skipped) before the run stops")
      .in(1, 1000);
  auto& par = c.parallel;
  l.add("parallel.backend", par.backend, "local | gloo | nccl (multi-process runs under moe-launch/Slurm/mpirun)")
      .one_of({"local", "gloo", "nccl"});
  l.add("parallel.expert_parallel_size", par.expert_parallel_size,
        "ranks over which each MoE layer's experts are sharded (divides the world size and moe.num_experts)")
      .in(1, 4096);
  l.add("parallel.data_parallel_size", par.data_parallel_size,
        "replicas of the non-expert parameters: the world size (0 = the world size)")
      .in(0, 4096);
  l.add("parallel.timeout_s", par.timeout_s, "seconds before a collective with a dead or hung rank fails")
      .in(0, 86400, false, /*lo_open=*/true);
  l.add("parallel.bucket_mb", par.bucket_mb, "gradient all-reduce bucket size in MB").in(0, 4096, false, true);
  auto& v = c.eval;
  l.add("eval.enabled", v.enabled, "evaluate after training");
  l.add("eval.split", v.split, "test | valid").one_of({"test", "valid"});
  l.add("eval.beam", v.beam, "beam size (1 = greedy)").in(1, 64);
  l.add("eval.lenpen", v.lenpen, "length penalty").in(0, 10);
  l.add("eval.max_len_a", v.max_len_a, "max hypothesis length a*source + b: a").in(0, 100);
  l.add("eval.max_len_b", v.max_len_b, "max hypothesis length a*source + b: b").in(1, 4096);
  l.add("eval.max_tokens", v.max_tokens, "source tokens per decoding batch").in(3, 1 << 22);
  return std::move(l.fields());
}

// Keys whose change makes a resumed run a different experiment.
bool must_match_on_resume(const std::string& key) {
  for (const char* prefix : {"data.", "tokenizer.", "model.", "moe."})
    if (key.rfind(prefix, 0) == 0)
      return key != "data.max_test_sentences" && key != "data.cache_dir" && key != "data.locale_root" &&
             key != "moe.plugins";  // where the plugins live may differ; the variant must match
  return false;
}

bool informational_on_resume(const std::string& key) {
  for (const char* k :
       {"run_dir", "log_level", "train.max_steps", "train.max_minutes", "train.log_every", "train.stats_every",
        "train.checkpoint_every", "train.keep_last", "train.threads", "train.max_skipped_updates"})
    if (key == k) return true;
  return key.rfind("eval.", 0) == 0 || key.rfind("parallel.", 0) == 0;
}

// The entries of a TOML document, with format-1 spellings rewritten when `format1`.
void apply_entries(RunConfig& config, const std::string& toml, const std::string& origin, bool format1) {
  auto fields = config_fields(config);
  auto entries = detail::parse_toml_entries(toml, origin);
  if (format1) {
    // Format 1 read some moe.* keys only for some variants and wrote every key; keep a key where that
    // code read it, in today's spelling.
    std::string variant = config.model.moe.variant;
    for (const auto& e : entries)
      if (e.key == "moe.variant") variant = e.text;
    const auto spec = variant_spec(variant, "moe.variant");
    const bool stochastic = spec.router == "stochastic";
    std::vector<detail::TomlEntry> kept;
    for (auto e : entries) {
      if (e.key == "moe.thor_eval_granularity") {
        if (!stochastic) continue;
        e.key = "moe.eval_granularity";
      }
      if (e.key == "moe.deterministic_eval") {
        if (e.text != "true" || spec.kind != SlotKind::kStratified) continue;
        e = {"moe.sample_in_eval", "boolean", "false", "", e.line};
      }
      if (e.key == "moe.threshold" && spec.router != "threshold") continue;
      if ((e.key == "moe.aux_weight" || e.key == "moe.z_weight") && stochastic) continue;
      if (e.key == "moe.capacity_factor" && (stochastic || parse_float_text(e.text, e.key) <= 0)) continue;
      if (e.key == "moe.eval_token_fraction" && (stochastic || parse_float_text(e.text, e.key) < 0)) continue;
      if (e.key == "moe.top_k" && spec.fixed_top_k > 0) continue;
      kept.push_back(e);
    }
    entries = kept;
  }
  for (const auto& e : entries) {
    const auto where = origin + ":" + std::to_string(e.line) + ": ";
    if (e.key.rfind(kRouterTable, 0) == 0) {
      const auto name = e.key.substr(std::string(kRouterTable).size());
      MOE_CHECK(e.kind == "string" || e.kind == "integer" || e.kind == "float" || e.kind == "boolean", where, e.key,
                ": a router setting must be a string, number or boolean, got a ", e.kind);
      config.model.moe.router.extra[name] = e.text;
      continue;
    }
    auto it = std::find_if(fields.begin(), fields.end(), [&](const ConfigField& f) { return f.key == e.key; });
    if (it == fields.end()) {
      std::vector<std::string> known;
      for (const auto& f : fields)
        if (section_of(f.key) == section_of(e.key)) known.push_back(f.key);
      MOE_THROW(where, "unknown key '", printable(e.key), "'",
                known.empty() ? std::string(" (unknown section)") : " (known in this section: " + join(known) + ")");
    }
    const bool ok = it->type == FieldType::kInt     ? e.kind == "integer"
                    : it->type == FieldType::kFloat ? e.kind == "integer" || e.kind == "float"
                    : it->type == FieldType::kBool
                        ? e.kind == "boolean"
                        : e.kind == "string" || (e.kind == "array" && e.item_kind == "string");
    const char* expected = it->type == FieldType::kInt     ? "an integer"
                           : it->type == FieldType::kFloat ? "a number"
                           : it->type == FieldType::kBool  ? "true or false"
                                                           : "a string";
    MOE_CHECK(ok, where, e.key, ": expected ", expected, ", got '", printable(e.text), "' (a TOML ", e.kind, ")");
    try {
      it->set(e.text);
    } catch (const Error& error) {
      MOE_THROW(where, error.what());
    }
  }
}

}  // namespace

std::vector<ConfigField> config_fields(RunConfig& c) {
  std::vector<ConfigField> out;
  for (auto& f : plain_fields(c)) {
    ConfigField field;
    static_cast<OptionField&>(field) = std::move(f);
    out.push_back(std::move(field));
    if (out.back().key == "moe.aux_combine") add_router_fields(out, c);
  }
  return out;
}

void set_config_value(RunConfig& config, const std::string& key, const std::string& value) {
  if (key.rfind(kRouterTable, 0) == 0 && key.size() > std::string(kRouterTable).size()) {
    config.model.moe.router.extra[key.substr(std::string(kRouterTable).size())] = value;
    return;
  }
  for (auto& field : config_fields(config)) {
    if (field.key == key) {
      field.set(value);
      return;
    }
  }
  MOE_THROW("unknown config key '", printable(key), "'");
}

void apply_toml(RunConfig& config, const std::string& toml, const std::string& origin) {
  apply_entries(config, toml, origin, /*format1=*/false);
}

void apply_format1_toml(RunConfig& config, const std::string& toml, const std::string& origin) {
  apply_entries(config, toml, origin, /*format1=*/true);
}

void apply_toml_file(RunConfig& config, const std::string& path) {
  MOE_CHECK(!path.empty(), "--config: the file name is empty");
  struct stat st {};
  MOE_CHECK(::stat(path.c_str(), &st) == 0, "config file '", printable(path), "' cannot be read (it does not exist)");
  MOE_CHECK(S_ISREG(st.st_mode), "config file '", printable(path), "' is not a regular file");
  std::ifstream in(path);
  MOE_CHECK(in.good(), "config file '", printable(path), "' cannot be read");
  std::ostringstream text;
  text << in.rdbuf();
  const auto content = text.str();
  MOE_CHECK(content.find_first_not_of(" \t\r\n") != std::string::npos, "config file '", printable(path),
            "' is empty; it should set at least one key (see configs/*.toml)");
  apply_toml(config, content, "config file '" + path + "'");
}

std::string RunConfig::to_toml() const {
  auto fields = config_fields(const_cast<RunConfig&>(*this));
  std::ostringstream out;
  std::string current;
  auto close_section = [&](const std::string& section) {
    if (section == "moe" && !model.moe.router.extra.empty()) {
      out << "\n[moe.router]\n";
      for (const auto& [k, v] : model.moe.router.extra) out << k << " = " << toml_string(v) << "\n";
    }
  };
  for (const auto& f : fields) {
    const auto section = section_of(f.key);
    if (section != current) {
      close_section(current);
      out << "\n[" << section << "]\n";
      current = section;
    }
    const auto name = section.empty() ? f.key : f.key.substr(section.size() + 1);
    if (f.is_set && !f.is_set()) {
      std::string preset;
      try {
        preset = f.get();
      } catch (const Error&) {
        preset = "?";  // an unknown variant: validate() says so
      }
      out << "# " << name << " = " << preset << "  (the variant's preset)\n";
    } else {
      out << name << " = " << f.get() << "\n";
    }
  }
  close_section(current);
  return out.str();
}

void check_resume_compatible(const RunConfig& mine_in, const RunConfig& theirs_in, const std::string& path) {
  RunConfig mine = mine_in, theirs = theirs_in;
  auto a = config_fields(mine), b = config_fields(theirs);
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].get() == b[i].get() || informational_on_resume(a[i].key)) continue;
    MOE_CHECK(!must_match_on_resume(a[i].key), "--resume: ", a[i].key, " is ", a[i].get(), " but the checkpoint ", path,
              " was trained with ", b[i].get());
    log_warn(detail::concat("[resume] ", a[i].key, " changed from ", b[i].get(), " to ", a[i].get(),
                            ": the run will differ from an uninterrupted one"));
  }
  MOE_CHECK(mine.model.moe.router.extra == theirs.model.moe.router.extra,
            "--resume: the [moe.router] settings differ "
            "from those the checkpoint ",
            path, " was trained with");
}

void load_run_plugins(const RunConfig& config, const std::string& context) {
  std::string failures;
  for (const auto& path : split_plugin_list(config.model.moe.plugins)) {
    bool loaded = false;  // a library of the same name already loaded (e.g. by --plugin) will do
    for (const auto& have : loaded_plugins())
      loaded |= std::filesystem::path(have).filename() == std::filesystem::path(path).filename();
    if (loaded) continue;
    try {
      load_plugin(path);
    } catch (const Error& e) {
      failures += std::string(failures.empty() ? "" : "; ") + e.what();
    }
  }
  if (failures.empty()) return;
  const auto& variant = config.model.moe.variant;
  const auto routers = known_routers(), builtins = builtin_variant_names();
  const bool available = std::find(routers.begin(), routers.end(), variant) != routers.end() ||
                         std::find(builtins.begin(), builtins.end(), variant) != builtins.end();
  MOE_CHECK(available, context, " needs moe.variant = '", printable(variant), "' from moe.plugins = '",
            printable(config.model.moe.plugins), "': ", failures, "; pass --plugin with the library's path");
  log_warn(detail::concat("[plugins] ", failures, " (not needed: moe.variant = '", variant, "' is available)"));
}

void RunConfig::validate() const {
  auto& self = const_cast<RunConfig&>(*this);
  for (const auto& f : plain_fields(self)) f.check("");
  run_directions(data);
  MOE_CHECK(data.corpus != "folder" || !data.root.empty(),
            "data.root must name the corpus folder when data.corpus = folder");
  MOE_CHECK(data.max_length + 2 <= model.max_positions, "data.max_length=", data.max_length,
            " needs model.max_positions >= ", data.max_length + 2, ", got ", model.max_positions);
  MOE_CHECK(data.max_tokens >= data.max_length, "data.max_tokens must be >= data.max_length=", data.max_length,
            ", got ", data.max_tokens);
  auto m = model;
  m.vocab_size = tokenizer.vocab_size;  // set from the tokenizer at run time
  m.validate("model", "moe", "moe");
  InverseSqrtSchedule{train.lr, train.warmup, train.warmup_init_lr}.validate("train");
  MOE_CHECK(train.precision != "bf16" || train.device != "cpu",
            "train.precision = bf16 needs train.device = cuda (bf16 autocast is CUDA-only here)");
  MOE_CHECK(parallel.backend != "gloo" || train.device == "cpu",
            "parallel.backend = gloo moves CPU tensors; "
            "train.device must be cpu, got '",
            printable(train.device), "' (use nccl for cuda)");
  MOE_CHECK(parallel.backend != "nccl" || train.device.rfind("cuda", 0) == 0,
            "parallel.backend = nccl needs train.device = cuda, got '", printable(train.device), "'");
  MOE_CHECK(parallel.expert_parallel_size == 1 || model.moe.is_moe(),
            "parallel.expert_parallel_size = ", parallel.expert_parallel_size,
            " needs an MoE model (moe.variant is dense)");
  MOE_CHECK(model.moe.num_experts % parallel.expert_parallel_size == 0,
            "parallel.expert_parallel_size = ", parallel.expert_parallel_size,
            " must divide moe.num_experts = ", model.moe.num_experts);
  MOE_CHECK(eval.max_tokens >= data.max_length, "eval.max_tokens must be >= data.max_length=", data.max_length,
            ", got ", eval.max_tokens);
}

}  // namespace moe
