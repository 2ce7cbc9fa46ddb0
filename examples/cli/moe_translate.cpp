// moe-translate: translates text with a checkpoint written by moe-train (one sentence per line,
// from a file or stdin, to stdout or a file), with beam search or greedy decoding.
//
//   echo "Open file" | moe-translate --checkpoint runs/demo/best.moeckpt --target de
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <fstream>
#include <iostream>

#include "moe/core/error.h"
#include "moe/core/option_fields.h"
#include "moe/core/plugins.h"
#include "moe/data/corpus.h"
#include "moe/eval/translate.h"
#include "moe/train/run_checkpoint.h"
#include "program_errors.h"

int main(int argc, char** argv) {
  CLI::App app{"Translate text with a moe checkpoint"};
  std::string checkpoint, target, input, output, device = "cpu";
  moe::TranslateOptions options;
  app.add_option("--checkpoint", checkpoint, "a .moeckpt file written by moe-train")->required();
  app.add_option("--target", target, "target language code (the model's <2xx> tag), e.g. de")->required();
  app.add_option("-i,--input", input, "input file (one sentence per line); default stdin");
  app.add_option("-o,--output", output, "output file; default stdout");
  app.add_option("--beam", options.search.beam, "beam size (1 = greedy; at most 64)");
  app.add_option("--lenpen", options.search.lenpen, "length penalty, in [0, 10]");
  app.add_option("--max-len-a", options.search.max_len_a, "hypotheses at most a*source_length + b tokens: a");
  app.add_option("--max-len-b", options.search.max_len_b, "... b");
  app.add_option("--max-tokens", options.max_tokens, "source tokens per batch");
  app.add_option("--device", device, "cpu | cuda | cuda:N");
  std::vector<std::string> plugins;
  app.add_option("--plugin", plugins, "a router plugin the checkpoint needs, from another path (repeatable)");
  CLI11_PARSE(app, argc, argv);
  try {
    options.search.validate();  // bounds before anything is loaded
    for (const auto& p : plugins) moe::load_plugin(p);
    auto loaded = moe::load_model_checkpoint(checkpoint, device);
    options.max_length = loaded.config.data.max_length;
    std::vector<std::string> lines;
    if (input.empty()) {
      for (std::string line; std::getline(std::cin, line);) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        MOE_CHECK(moe::is_valid_utf8(line), "stdin:", lines.size() + 1, ": invalid UTF-8: '", moe::printable(line),
                  "'");
        lines.push_back(line);
      }
    } else {
      lines = moe::read_text_lines(input);
    }
    auto hyps = moe::translate(loaded.model, loaded.tokenizer, "<2" + target + ">", lines, options);
    std::ofstream file;
    if (!output.empty()) {
      file.open(output);
      if (!file.good()) throw moe::Error("cannot write " + output);
    }
    std::ostream& out = output.empty() ? std::cout : file;
    for (const auto& h : hyps) out << h << '\n';
    out.flush();
    if (!out.good()) throw moe::Error("writing the translations failed");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moe-translate: error: %s\n", moe::cli::error_line(e).c_str());
    return 1;
  }
  return 0;
}
