// A trainer the fault-injection tests kill at a chosen moment (tests/integration/reliability_test.cpp):
//   moe_fault_worker <config.toml> <run_dir> <cache_dir> <max_steps> <every> <file name> <n> [resume]
// trains configs/tiny-like runs validating and checkpointing every <every> updates, and exits with
// code 42 halfway through the n-th write of a checkpoint file named <file name> (e.g. best.moeckpt):
// the step checkpoint of that step is complete, the best one is not.
#include <unistd.h>

#include <cstdio>
#include <string>

#include "moe/train/checkpoint_file.h"
#include "moe/train/trainer.h"

int main(int argc, char** argv) {
  if (argc < 8) {
    std::fprintf(stderr, "usage: %s config run_dir cache_dir max_steps every name n [resume]\n", argv[0]);
    return 2;
  }
  try {
    moe::RunConfig c;
    moe::apply_toml_file(c, argv[1]);
    c.run_dir = argv[2];
    c.data.cache_dir = argv[3];
    c.train.max_steps = std::stoll(argv[4]);
    c.train.validate_every = c.train.checkpoint_every = std::stoll(argv[5]);
    c.train.keep_last = 10;
    c.train.threads = 1;
    c.log_level = "warn";
    c.eval.enabled = false;
    const std::string name = argv[6];
    const int n = std::stoi(argv[7]);
    static int seen = 0;
    moe::set_checkpoint_write_hook([name, n](const std::string& path) {
      if (path.size() >= name.size() && path.compare(path.size() - name.size(), name.size(), name) == 0 && ++seen == n)
        ::_exit(42);
    });
    moe::Trainer t(c, argc > 8 ? argv[8] : "");
    t.train();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moe_fault_worker: %s\n", e.what());
    return 1;
  }
  return 0;
}
