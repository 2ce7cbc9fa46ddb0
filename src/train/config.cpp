// Run configuration: fields, TOML reading/writing and validation (see moe/train/config.h).
#include "moe/train/config.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "moe/core/error.h"
#include "moe/core/json.h"
#include "moe/core/logging.h"
#include "moe/train/schedule.h"

namespace moe {
namespace {

std::string format_double(double v) {
  std::ostringstream out;
  out.precision(17);
  out << v;
  std::string s = out.str();
  // Shortest form that reads back identically.
  for (int p = 1; p <= 17; ++p) {
    std::ostringstream o;
    o.precision(p);
    o << v;
    if (std::strtod(o.str().c_str(), nullptr) == v) {
      s = o.str();
      break;
    }
  }
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";  // TOML float literal
  return s;
}

class FieldList {
 public:
  explicit FieldList(std::vector<ConfigField>& out) : out_(out) {}
  void add(const std::string& key, std::string& ref, const std::string& help) {
    // A TOML literal string ('...', no escapes) when possible, so backslashes round-trip.
    out_.push_back({key, help, "string", [&ref](const std::string& v) { ref = v; },
                    [&ref] { return ref.find('\'') == std::string::npos ? "'" + ref + "'" : json_quote(ref); }});
  }
  void add(const std::string& key, int64_t& ref, const std::string& help) {
    out_.push_back({key, help, "int",
                    [&ref, key](const std::string& v) {
                      char* end = nullptr;
                      errno = 0;
                      const long long parsed = std::strtoll(v.c_str(), &end, 10);
                      MOE_CHECK(!v.empty() && end != nullptr && *end == '\0' && errno == 0, key,
                                ": expected an integer, got '", v, "'");
                      ref = parsed;
                    },
                    [&ref] { return std::to_string(ref); }});
  }
  void add(const std::string& key, double& ref, const std::string& help) {
    out_.push_back({key, help, "float",
                    [&ref, key](const std::string& v) {
                      char* end = nullptr;
                      const double parsed = std::strtod(v.c_str(), &end);
                      MOE_CHECK(!v.empty() && end != nullptr && *end == '\0' && std::isfinite(parsed), key,
                                ": expected a finite number, got '", v, "'");
                      ref = parsed;
                    },
                    [&ref] { return format_double(ref); }});
  }
  void add(const std::string& key, bool& ref, const std::string& help) {
    out_.push_back({key, help, "bool",
                    [&ref, key](const std::string& v) {
                      if (v == "true" || v == "1" || v == "on" || v == "yes") {
                        ref = true;
                      } else if (v == "false" || v == "0" || v == "off" || v == "no") {
                        ref = false;
                      } else {
                        MOE_THROW(key, ": expected true or false, got '", v, "'");
                      }
                    },
                    [&ref] { return std::string(ref ? "true" : "false"); }});
  }

 private:
  std::vector<ConfigField>& out_;
};

std::string section_of(const std::string& key) {
  const auto dot = key.find('.');
  return dot == std::string::npos ? "" : key.substr(0, dot);
}

}  // namespace

std::vector<ConfigField> config_fields(RunConfig& c) {
  std::vector<ConfigField> f;
  FieldList l(f);
  l.add("run_dir", c.run_dir, "folder for checkpoints, metrics.jsonl, results.json and hypotheses");
  l.add("log_level", c.log_level, "trace | debug | info | warn | error | off");
  auto& d = c.data;
  l.add("data.corpus", d.corpus, "gettext (default corpus built from the system's message catalogs) | folder");
  l.add("data.root", d.root, "folder corpus root (pair folders <src>-<tgt>/ or multi-way files)");
  l.add("data.languages", d.languages, "non-pivot languages, comma-separated");
  l.add("data.pivot", d.pivot, "pivot language (English)");
  l.add("data.directions", d.directions, "pivot-xx | xx-pivot | both | explicit list 'en-de,de-en'");
  l.add("data.max_train_pairs", d.max_train_pairs, "training pairs per direction (0 = all)");
  l.add("data.max_valid_sentences", d.max_valid_sentences, "validation sentences per direction (0 = all)");
  l.add("data.max_test_sentences", d.max_test_sentences, "test sentences per direction (0 = all)");
  l.add("data.max_line_bytes", d.max_line_bytes, "pairs with a longer line are skipped and counted (0 = no limit)");
  l.add("data.max_length", d.max_length, "tokens per side; longer examples are skipped");
  l.add("data.temperature", d.temperature, "direction sampling temperature (1 = proportional)");
  l.add("data.max_tokens", d.max_tokens, "tokens per training micro-batch");
  l.add("data.locale_root", d.locale_root, "gettext corpus: the locale folder to read");
  l.add("data.cache_dir", d.cache_dir, "built corpora and tokenizers (shared across runs)");
  auto& t = c.tokenizer;
  l.add("tokenizer.vocab_size", t.vocab_size, "SentencePiece vocabulary size");
  l.add("tokenizer.model_type", t.model_type, "unigram | bpe");
  l.add("tokenizer.character_coverage", t.character_coverage, "SentencePiece character coverage");
  l.add("tokenizer.input_sentence_size", t.input_sentence_size, "sentences sampled to train the tokenizer");
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
  l.add("moe.variant", e.variant,
        "dense | switch | gshard | topk | xmoe | thor | smoe | expert_choice | hash | <router>");
  l.add("moe.num_experts", e.num_experts, "experts per MoE layer");
  l.add("moe.expert_hidden", e.expert_hidden, "expert inner width (0 = model.ffn_hidden)");
  l.add("moe.top_k", e.top_k, "k of topk and custom routers");
  l.add("moe.every", e.every, "an MoE layer every N layers");
  l.add("moe.index_base", e.index_base, "1: layers 2,4,.. are MoE (SMoE, XMoE); 0: layers 0,2,.. (THOR)");
  l.add("moe.placement", e.placement, "encoder | decoder | both");
  l.add("moe.capacity_factor", e.capacity_factor, "capacity factor (<= 0: the variant's default)");
  l.add("moe.eval_token_fraction", e.eval_token_fraction,
        "evaluation capacity as a fraction of tokens (1 = no drops, 0 = capacity factor, -1 = variant default)");
  l.add("moe.aux_weight", e.aux_weight, "load-balancing loss weight");
  l.add("moe.z_weight", e.z_weight, "router z-loss weight");
  l.add("moe.threshold", e.threshold, "xmoe threshold t");
  l.add("moe.strata", e.strata, "smoe strata, e.g. '4,4'");
  l.add("moe.thor_eval_granularity", e.thor_eval_granularity,
        "thor inference draw: token | sequence | position | batch");
  l.add("moe.thor_alpha", e.thor_alpha, "thor consistency weight");
  l.add("moe.deterministic_eval", e.deterministic_eval,
        "no sampling in evaluation (SMoE samples its 2nd expert by default)");
  l.add("moe.aux_combine", e.aux_combine, "auto | sum | mean over MoE layers");
  auto& r = c.train;
  l.add("train.lr", r.lr, "peak learning rate");
  l.add("train.warmup", r.warmup, "warmup updates (inverse-sqrt schedule)");
  l.add("train.warmup_init_lr", r.warmup_init_lr, "learning rate at step 0");
  l.add("train.adam_beta1", r.adam_beta1, "Adam beta1");
  l.add("train.adam_beta2", r.adam_beta2, "Adam beta2");
  l.add("train.adam_eps", r.adam_eps, "Adam epsilon");
  l.add("train.weight_decay", r.weight_decay, "decoupled weight decay");
  l.add("train.clip_norm", r.clip_norm, "gradient clipping norm (0 = off)");
  l.add("train.label_smoothing", r.label_smoothing, "label smoothing epsilon");
  l.add("train.update_freq", r.update_freq, "micro-batches per update (gradient accumulation)");
  l.add("train.max_steps", r.max_steps, "updates to train");
  l.add("train.max_minutes", r.max_minutes, "wall-clock training budget in minutes (0 = none)");
  l.add("train.seed", r.seed, "random seed");
  l.add("train.log_every", r.log_every, "progress and metrics every N updates");
  l.add("train.stats_every", r.stats_every, "MoE statistics every N updates");
  l.add("train.validate_every", r.validate_every, "validation every N updates");
  l.add("train.checkpoint_every", r.checkpoint_every, "checkpoint every N updates");
  l.add("train.keep_last", r.keep_last, "step checkpoints to keep");
  l.add("train.device", r.device, "cpu | cuda | cuda:N");
  l.add("train.precision", r.precision, "fp32 | bf16 (CUDA autocast)");
  l.add("train.threads", r.threads, "intra-op threads (0 = default)");
  auto& par = c.parallel;
  l.add("parallel.backend", par.backend, "local | gloo | nccl (multi-process runs under moe-launch/Slurm/mpirun)");
  l.add("parallel.expert_parallel_size", par.expert_parallel_size,
        "ranks over which each MoE layer's experts are sharded (divides the world size and moe.num_experts)");
  l.add("parallel.data_parallel_size", par.data_parallel_size,
        "replicas of the non-expert parameters: the world size (0 = the world size)");
  l.add("parallel.timeout_s", par.timeout_s, "seconds before a collective with a dead or hung rank fails");
  l.add("parallel.bucket_mb", par.bucket_mb, "gradient all-reduce bucket size in MB");
  auto& v = c.eval;
  l.add("eval.enabled", v.enabled, "evaluate after training");
  l.add("eval.split", v.split, "test | valid");
  l.add("eval.beam", v.beam, "beam size (1 = greedy)");
  l.add("eval.lenpen", v.lenpen, "length penalty");
  l.add("eval.max_len_a", v.max_len_a, "max hypothesis length a*source + b: a");
  l.add("eval.max_len_b", v.max_len_b, "max hypothesis length a*source + b: b");
  l.add("eval.max_tokens", v.max_tokens, "source tokens per decoding batch");
  return f;
}

void set_config_value(RunConfig& config, const std::string& key, const std::string& value) {
  for (auto& field : config_fields(config)) {
    if (field.key == key) {
      field.set(value);
      return;
    }
  }
  MOE_THROW("unknown config key '", key, "'");
}

namespace {

// The TOML subset the configs use: [section] headers, key = value lines, basic ("...", with
// escapes) and literal ('...') strings, numbers, booleans, one-line arrays of those (joined with
// ','), and # comments outside strings. Returns (key, value, line) in file order.
struct TomlEntry {
  std::string key, value;
  int line;
};

std::vector<TomlEntry> parse_toml(const std::string& text, const std::string& origin) {
  std::vector<TomlEntry> out;
  std::istringstream in(text);
  std::string section, raw;
  int line_no = 0;
  while (std::getline(in, raw)) {
    ++line_no;
    if (!raw.empty() && raw.back() == '\r') raw.pop_back();
    size_t p = 0;
    auto fail = [&](const std::string& why) { MOE_THROW(origin, ":", line_no, ": ", why, " in: ", raw); };
    auto skip_ws = [&] {
      while (p < raw.size() && (raw[p] == ' ' || raw[p] == '\t')) ++p;
    };
    auto rest_is_comment = [&] {
      skip_ws();
      if (p < raw.size() && raw[p] != '#') fail("unexpected text after the value");
    };
    skip_ws();
    if (p == raw.size() || raw[p] == '#') continue;
    if (raw[p] == '[') {
      const auto close = raw.find(']', p);
      if (close == std::string::npos || raw.compare(p, 2, "[[") == 0) fail("expected a [section] header");
      section = raw.substr(p + 1, close - p - 1);
      section.erase(std::remove_if(section.begin(), section.end(), ::isspace), section.end());
      p = close + 1;
      rest_is_comment();
      continue;
    }
    const auto eq = raw.find('=', p);
    if (eq == std::string::npos) fail("expected key = value");
    std::string key = raw.substr(p, eq - p);
    while (!key.empty() && (key.back() == ' ' || key.back() == '\t')) key.pop_back();
    if (key.empty() || !std::all_of(key.begin(), key.end(), [](char c) {
          return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
        }))
      fail("bad key '" + key + "'");
    p = eq + 1;
    // One scalar: a string or a bare token (number, boolean).
    auto scalar = [&]() -> std::string {
      skip_ws();
      if (p >= raw.size()) fail("missing value");
      std::string v;
      if (raw[p] == '\'') {
        const auto close = raw.find('\'', p + 1);
        if (close == std::string::npos) fail("unterminated string");
        v = raw.substr(p + 1, close - p - 1);
        p = close + 1;
        return v;
      }
      if (raw[p] == '"') {
        for (++p; p < raw.size() && raw[p] != '"'; ++p) {
          if (raw[p] != '\\') {
            v += raw[p];
            continue;
          }
          if (++p >= raw.size()) fail("unterminated string");
          switch (raw[p]) {
            case 'n': v += '\n'; break;
            case 't': v += '\t'; break;
            case 'r': v += '\r'; break;
            case '"': v += '"'; break;
            case '\\': v += '\\'; break;
            case 'u': {
              if (p + 4 >= raw.size()) fail("bad \\u escape");
              const unsigned long cp = std::stoul(raw.substr(p + 1, 4), nullptr, 16);
              if (cp >= 0x80) fail("\\u escapes above U+007F are not supported; write the character itself");
              v += static_cast<char>(cp);
              p += 4;
              break;
            }
            default: fail(std::string("unknown escape \\") + raw[p]);
          }
        }
        if (p >= raw.size()) fail("unterminated string");
        ++p;
        return v;
      }
      const auto start = p;
      while (p < raw.size() && raw[p] != '#' && raw[p] != ',' && raw[p] != ']') ++p;
      v = raw.substr(start, p - start);
      while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.pop_back();
      if (v.empty()) fail("missing value");
      return v;
    };
    skip_ws();
    std::string value;
    if (p < raw.size() && raw[p] == '[') {
      ++p;
      skip_ws();
      while (p < raw.size() && raw[p] != ']') {
        value += (value.empty() ? "" : ",") + scalar();
        skip_ws();
        if (p < raw.size() && raw[p] == ',') ++p;
        skip_ws();
      }
      if (p >= raw.size()) fail("unterminated array (arrays must fit on one line)");
      ++p;
    } else {
      value = scalar();
    }
    rest_is_comment();
    out.push_back({section.empty() ? key : section + "." + key, value, line_no});
  }
  return out;
}

}  // namespace

void apply_toml(RunConfig& config, const std::string& toml, const std::string& origin) {
  auto fields = config_fields(config);
  for (const auto& entry : parse_toml(toml, origin)) {
    const auto& key = entry.key;
    auto it = std::find_if(fields.begin(), fields.end(), [&](const ConfigField& f) { return f.key == key; });
    if (it == fields.end()) {
      std::string known;
      const auto section = section_of(key);
      for (const auto& f : fields)
        if (section_of(f.key) == section) known += (known.empty() ? "" : ", ") + f.key;
      MOE_THROW(origin, ":", entry.line, ": unknown key '", key, "'",
                known.empty() ? " (unknown section)" : " (known in this section: " + known + ")");
    }
    try {
      it->set(entry.value);
    } catch (const Error& e) {
      MOE_THROW(origin, ":", entry.line, ": ", e.what());
    }
  }
}

void apply_toml_file(RunConfig& config, const std::string& path) {
  std::ifstream in(path);
  MOE_CHECK(in.good(), "config file '", path, "' cannot be read");
  std::ostringstream text;
  text << in.rdbuf();
  apply_toml(config, text.str(), "config file '" + path + "'");
}

std::string RunConfig::to_toml() const {
  auto fields = config_fields(const_cast<RunConfig&>(*this));
  std::ostringstream out;
  std::string current = "";
  for (const auto& f : fields) {
    const auto section = section_of(f.key);
    if (section != current) {
      out << "\n[" << section << "]\n";
      current = section;
    }
    const auto name = section.empty() ? f.key : f.key.substr(section.size() + 1);
    out << name << " = " << f.get() << "\n";
  }
  return out.str();
}

std::vector<std::pair<std::string, std::string>> run_directions(const DataConfig& data) {
  std::vector<std::string> langs;
  std::stringstream ss(data.languages);
  for (std::string item; std::getline(ss, item, ',');) {
    item.erase(std::remove_if(item.begin(), item.end(), ::isspace), item.end());
    if (!item.empty()) langs.push_back(item);
  }
  std::vector<std::pair<std::string, std::string>> out;
  if (data.directions == "both" || data.directions == "pivot-xx" || data.directions == "xx-pivot") {
    MOE_CHECK(!langs.empty(), "data.languages must list at least one language, got '", data.languages, "'");
    for (const auto& l : langs) {
      MOE_CHECK(l != data.pivot, "data.languages must not contain the pivot '", data.pivot, "'");
      if (data.directions != "xx-pivot") out.emplace_back(data.pivot, l);
      if (data.directions != "pivot-xx") out.emplace_back(l, data.pivot);
    }
    return out;
  }
  std::stringstream ds(data.directions);
  for (std::string item; std::getline(ds, item, ',');) {
    item.erase(std::remove_if(item.begin(), item.end(), ::isspace), item.end());
    const auto dash = item.find('-');
    MOE_CHECK(dash != std::string::npos && dash > 0 && dash + 1 < item.size(), "data.directions: '", item,
              "' is not of the form src-tgt (or use pivot-xx, xx-pivot, both)");
    out.emplace_back(item.substr(0, dash), item.substr(dash + 1));
  }
  MOE_CHECK(!out.empty(), "data.directions is empty");
  return out;
}

void RunConfig::validate() const {
  MOE_CHECK(!run_dir.empty(), "run_dir must not be empty");
  parse_log_level(log_level);
  MOE_CHECK(data.corpus == "gettext" || data.corpus == "folder", "data.corpus must be gettext or folder, got '",
            data.corpus, "'");
  MOE_CHECK(data.corpus != "folder" || !data.root.empty(),
            "data.root must name the corpus folder when data.corpus = folder");
  run_directions(data);
  MOE_CHECK(data.max_train_pairs >= 0, "data.max_train_pairs must be >= 0, got ", data.max_train_pairs);
  MOE_CHECK(data.max_valid_sentences >= 0, "data.max_valid_sentences must be >= 0, got ", data.max_valid_sentences);
  MOE_CHECK(data.max_test_sentences >= 0, "data.max_test_sentences must be >= 0, got ", data.max_test_sentences);
  MOE_CHECK(data.max_length >= 3, "data.max_length must be >= 3 (tag, a piece, EOS), got ", data.max_length);
  MOE_CHECK(data.max_length + 2 <= model.max_positions, "data.max_length=", data.max_length,
            " needs model.max_positions >= ", data.max_length + 2, ", got ", model.max_positions);
  MOE_CHECK(data.temperature > 0, "data.temperature must be > 0, got ", data.temperature);
  MOE_CHECK(data.max_tokens >= data.max_length, "data.max_tokens must be >= data.max_length=", data.max_length,
            ", got ", data.max_tokens);
  MOE_CHECK(tokenizer.vocab_size >= 300, "tokenizer.vocab_size must be >= 300 (byte fallback needs 256+), got ",
            tokenizer.vocab_size);
  MOE_CHECK(tokenizer.model_type == "unigram" || tokenizer.model_type == "bpe",
            "tokenizer.model_type must be unigram or bpe, got '", tokenizer.model_type, "'");
  auto m = model;
  m.vocab_size = tokenizer.vocab_size;  // set from the tokenizer at run time
  try {
    m.validate("model");
  } catch (const Error& e) {
    // Report moe.* keys as they are spelled in the config.
    std::string msg = e.what();
    for (size_t pos; (pos = msg.find("model.moe.")) != std::string::npos;) msg.replace(pos, 10, "moe.");
    throw Error(msg);
  }
  InverseSqrtSchedule{train.lr, train.warmup, train.warmup_init_lr}.validate("train");
  MOE_CHECK(train.adam_beta1 >= 0 && train.adam_beta1 < 1, "train.adam_beta1 must be in [0, 1), got ",
            train.adam_beta1);
  MOE_CHECK(train.adam_beta2 >= 0 && train.adam_beta2 < 1, "train.adam_beta2 must be in [0, 1), got ",
            train.adam_beta2);
  MOE_CHECK(train.adam_eps > 0, "train.adam_eps must be > 0, got ", train.adam_eps);
  MOE_CHECK(train.weight_decay >= 0, "train.weight_decay must be >= 0, got ", train.weight_decay);
  MOE_CHECK(train.clip_norm >= 0, "train.clip_norm must be >= 0, got ", train.clip_norm);
  MOE_CHECK(train.label_smoothing >= 0 && train.label_smoothing < 1, "train.label_smoothing must be in [0, 1), got ",
            train.label_smoothing);
  MOE_CHECK(train.update_freq >= 1, "train.update_freq must be >= 1, got ", train.update_freq);
  MOE_CHECK(train.max_steps >= 1, "train.max_steps must be >= 1, got ", train.max_steps);
  MOE_CHECK(train.max_minutes >= 0, "train.max_minutes must be >= 0, got ", train.max_minutes);
  for (auto [name, value] : {std::pair<const char*, int64_t>{"train.log_every", train.log_every},
                             {"train.stats_every", train.stats_every},
                             {"train.validate_every", train.validate_every},
                             {"train.checkpoint_every", train.checkpoint_every},
                             {"train.keep_last", train.keep_last}}) {
    MOE_CHECK(value >= 1, name, " must be >= 1, got ", value);
  }
  MOE_CHECK(train.device == "cpu" || train.device.rfind("cuda", 0) == 0,
            "train.device must be cpu, cuda or cuda:N, got '", train.device, "'");
  MOE_CHECK(train.precision == "fp32" || train.precision == "bf16", "train.precision must be fp32 or bf16, got '",
            train.precision, "'");
  MOE_CHECK(train.precision != "bf16" || train.device != "cpu",
            "train.precision = bf16 needs train.device = cuda (bf16 autocast is CUDA-only here)");
  MOE_CHECK(train.threads >= 0, "train.threads must be >= 0, got ", train.threads);
  MOE_CHECK(parallel.backend == "local" || parallel.backend == "gloo" || parallel.backend == "nccl",
            "parallel.backend must be local, gloo or nccl, got '", parallel.backend, "'");
  MOE_CHECK(parallel.backend != "gloo" || train.device == "cpu", "parallel.backend = gloo moves CPU tensors; "
            "train.device must be cpu, got '", train.device, "' (use nccl for cuda)");
  MOE_CHECK(parallel.backend != "nccl" || train.device.rfind("cuda", 0) == 0,
            "parallel.backend = nccl needs train.device = cuda, got '", train.device, "'");
  MOE_CHECK(parallel.expert_parallel_size >= 1, "parallel.expert_parallel_size must be >= 1, got ",
            parallel.expert_parallel_size);
  MOE_CHECK(parallel.data_parallel_size >= 0, "parallel.data_parallel_size must be >= 0, got ",
            parallel.data_parallel_size);
  MOE_CHECK(parallel.timeout_s > 0, "parallel.timeout_s must be > 0, got ", parallel.timeout_s);
  MOE_CHECK(parallel.bucket_mb > 0, "parallel.bucket_mb must be > 0, got ", parallel.bucket_mb);
  MOE_CHECK(parallel.expert_parallel_size == 1 || model.moe.is_moe(),
            "parallel.expert_parallel_size = ", parallel.expert_parallel_size, " needs an MoE model (moe.variant is dense)");
  MOE_CHECK(model.moe.num_experts % parallel.expert_parallel_size == 0, "parallel.expert_parallel_size = ",
            parallel.expert_parallel_size, " must divide moe.num_experts = ", model.moe.num_experts);
  MOE_CHECK(eval.split == "test" || eval.split == "valid", "eval.split must be test or valid, got '", eval.split, "'");
  MOE_CHECK(eval.beam >= 1, "eval.beam must be >= 1, got ", eval.beam);
  MOE_CHECK(eval.max_len_a >= 0 && eval.max_len_b >= 1, "eval.max_len_a must be >= 0 and eval.max_len_b >= 1, got ",
            eval.max_len_a, " and ", eval.max_len_b);
  MOE_CHECK(eval.max_tokens >= data.max_length, "eval.max_tokens must be >= data.max_length=", data.max_length,
            ", got ", eval.max_tokens);
}

}  // namespace moe
