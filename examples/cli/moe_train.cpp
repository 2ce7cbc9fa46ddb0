// moe-train: trains a multilingual MoE translation model, then evaluates it (BLEU/chrF per
// direction, results.json). A thin main over moe::Trainer; configs/*.toml hold the presets.
//
//   moe-train --config configs/demo.toml
//   moe-train --config configs/tiny.toml --moe.variant xmoe --train.max_steps 50
//   moe-train --config configs/demo.toml --resume          # continue the newest checkpoint
//   moe-train --config configs/demo.toml --dump-config     # print the resolved configuration
//   moe-train --config c.toml --moe.variant cosine --moe.router.cosine_dim 32   # a router's own setting
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <iostream>

#include "config_cli.h"
#include "moe/core/stop_request.h"
#include "moe/train/trainer.h"
#include "program_errors.h"

int main(int argc, char** argv) {
  // SIGINT, SIGTERM, SIGHUP: finish the update, checkpoint, exit 128 + the signal; a second one: at once.
  moe::install_stop_signal_handlers();
  CLI::App app{"Train and evaluate a multilingual Mixture-of-Experts translation model"};
  moe::cli::ConfigOptions config_options;
  moe::cli::add_config_options(app, config_options);
  bool dump = false, no_eval = false, discard_later = false;
  std::string resume;
  app.add_flag("--dump-config", dump, "print the resolved configuration as TOML and exit");
  app.add_option("--resume", resume, "continue from a checkpoint: a path, or no value for the newest in run_dir")
      ->expected(0, 1);
  app.add_flag("--discard-later", discard_later,
               "with --resume: delete the step checkpoints after the resumed one (default: move them aside)");
  app.add_flag("--no-eval", no_eval, "train only (skip the final evaluation)");
  app.footer("Settings of a router of your own: --moe.router.<name> VALUE (the [moe.router] table of a config file).");
  std::string run_dir;
  try {
    moe::RunConfig config;
    int exit_code = 0;
    if (!moe::cli::parse_run_config(app, argc, argv, config_options, config, exit_code)) return exit_code;
    if (dump) {
      std::cout << config.to_toml();
      return 0;
    }
    run_dir = config.run_dir;
    if (app.count("--resume") > 0 && resume.empty()) resume = "latest";
    moe::Trainer trainer(config, resume, discard_later);
    trainer.train();
    if (config.eval.enabled && !no_eval) trainer.evaluate();
    std::printf("run folder: %s\n", config.run_dir.c_str());
  } catch (const moe::Interrupted& e) {
    std::fprintf(stderr, "moe-train: %s\n", moe::cli::error_line(e).c_str());
    return e.exit_code();
  } catch (const std::exception& e) {
    const auto line = moe::cli::error_line(e);
    std::fprintf(stderr, "moe-train: error: %s\n", line.c_str());
    moe::cli::append_to_run_log(run_dir, line);
    return 1;
  }
  return 0;
}
