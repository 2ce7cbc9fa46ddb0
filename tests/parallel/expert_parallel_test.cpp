// Multi-process tests of expert and data parallelism: each starts build/bin/moe_parallel_worker on
// 2 or 4 processes over Gloo on loopback (launch_local, bounded in time) and reads what every rank
// wrote. Also the launcher and the environment reader on their own.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "moe/core/build_config.h"
#include "moe/core/error.h"
#include "moe/parallel/communicator.h"
#include "moe/parallel/launcher.h"
#include "moe/parallel/rendezvous.h"
#include "test_paths.h"

namespace fs = std::filesystem;

namespace {

struct Run {
  moe::LaunchResult result;
  std::vector<std::string> reports;
  double seconds = 0;
  std::string all() const {
    std::string s = result.summary;
    for (size_t r = 0; r < reports.size(); ++r) s += "--- rank " + std::to_string(r) + ":\n" + reports[r];
    return s;
  }
};

fs::path scratch(const std::string& name) {
  auto dir = fs::temp_directory_path() / ("moe-parallel-" + std::to_string(::getpid())) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

Run run_worker(int nproc, std::vector<std::string> args, const fs::path& outdir, double timeout_s = 120) {
  std::vector<std::string> command{std::string(moe::testing::kBinDir) + "/moe_parallel_worker"};
  command.insert(command.end(), args.begin(), args.end());
  command.push_back(outdir.string());
  moe::LaunchOptions o;
  o.nproc = nproc;
  o.timeout_s = timeout_s;
  o.grace_s = 2;
  const auto start = std::chrono::steady_clock::now();
  Run run;
  run.result = moe::launch_local(command, o);
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (int r = 0; r < nproc; ++r) {
    std::ifstream in(outdir / ("rank" + std::to_string(r) + ".txt"));
    std::stringstream s;
    s << in.rdbuf();
    run.reports.push_back(s.str());
  }
  return run;
}

void skip_without_gloo() {
  if (!MOE_WITH_GLOO) GTEST_SKIP() << "moe was built without Gloo (libgloo-dev)";
}

class ExpertParallelLayer : public ::testing::TestWithParam<std::tuple<std::string, int, int>> {};

TEST_P(ExpertParallelLayer, MatchesTheSingleProcessLayer) {
  skip_without_gloo();
  const auto [router, world, ep] = GetParam();
  auto dir = scratch("layer-" + router + "-" + std::to_string(world) + "-" + std::to_string(ep));
  auto run = run_worker(world, {"layer", router, std::to_string(ep)}, dir);
  ASSERT_EQ(run.result.exit_code, 0) << run.all();
  for (const auto& r : run.reports) EXPECT_NE(r.find("\nOK"), std::string::npos) << run.all();
}

INSTANTIATE_TEST_SUITE_P(
    Routers, ExpertParallelLayer,
    ::testing::Values(std::make_tuple("topk", 2, 2), std::make_tuple("topk", 4, 4), std::make_tuple("topk", 4, 2),
                      std::make_tuple("threshold", 2, 2), std::make_tuple("threshold", 4, 4),
                      std::make_tuple("stochastic", 2, 2), std::make_tuple("stochastic", 4, 4),
                      std::make_tuple("smoe", 2, 2), std::make_tuple("smoe", 4, 4), std::make_tuple("smoe", 4, 2),
                      std::make_tuple("expert_choice", 2, 2), std::make_tuple("expert_choice", 4, 4)),
    [](const auto& test) {
      return std::get<0>(test.param) + "_W" + std::to_string(std::get<1>(test.param)) + "_EP" +
             std::to_string(std::get<2>(test.param));
    });

// Bucketed gradient sums equal per-parameter all-reduces (over the world for replicated
// parameters, over the expert-data group for experts), buckets start during backward, and the
// norm counts every expert once; a rank without tokens included.
TEST(GradientSynchronizer, BucketsEqualPerParameterSumsAndStartDuringBackward) {
  skip_without_gloo();
  for (const auto& [world, ep] : {std::make_pair(2, 2), std::make_pair(4, 2)}) {
    auto dir = scratch("grads-" + std::to_string(world) + "-" + std::to_string(ep));
    auto run = run_worker(world, {"grads", std::to_string(ep)}, dir);
    ASSERT_EQ(run.result.exit_code, 0) << run.all();
    for (const auto& r : run.reports) EXPECT_NE(r.find("\nOK"), std::string::npos) << run.all();
  }
}

TEST(ExpertParallelFaults, DeadRankFailsThePeerWithinTheTimeout) {
  skip_without_gloo();
  auto run = run_worker(2, {"dead", "exit"}, scratch("dead-exit"), 60);
  EXPECT_EQ(run.result.first_failed_rank, 0) << run.all();
  EXPECT_EQ(run.result.exit_code, 42) << run.all();  // rank 0 caught the broken connection and said so
  EXPECT_NE(run.reports[0].find("gloo communicator"), std::string::npos) << run.all();
  EXPECT_NE(run.reports[0].find("a peer process may have exited or hung"), std::string::npos) << run.all();
  EXPECT_LT(run.seconds, 30) << run.all();
}

TEST(ExpertParallelFaults, HungRankFailsThePeerWithinTheTimeout) {
  skip_without_gloo();
  auto run = run_worker(2, {"dead", "hang"}, scratch("dead-hang"), 60);
  EXPECT_EQ(run.result.first_failed_rank, 0) << run.all();
  EXPECT_EQ(run.result.exit_code, 42) << run.all();  // rank 0 caught the timeout and said so
  EXPECT_NE(run.reports[0].find("timeout 3 s"), std::string::npos) << run.all();
  EXPECT_LT(run.seconds, 30) << run.all();  // 3 s timeout + start-up, never the 600 s hang
}

TEST(ExpertParallelFaults, DifferingConfigsAreRefusedAtStartUp) {
  skip_without_gloo();
  auto run = run_worker(2, {"mismatch"}, scratch("mismatch"), 60);
  EXPECT_EQ(run.result.exit_code, 42) << run.all();
  for (const auto& r : run.reports) {
    EXPECT_NE(r.find("configuration differs between ranks: rank 1 has 'lr = 0.003' where rank 0 has 'lr = 0.001'"),
              std::string::npos)
        << run.all();
  }
}

TEST(ShardedCheckpoint, SavedWithFourRanksLoadsWithTwoAndOne) {
  skip_without_gloo();
  auto dir = scratch("reshard");
  auto saved = run_worker(4, {"reshard", "save", "4"}, dir);
  ASSERT_EQ(saved.result.exit_code, 0) << saved.all();
  EXPECT_TRUE(fs::exists(dir / "model-gshard.experts-3-of-4.moeckpt"));
  for (const auto& [world, ep] : {std::make_pair(2, 2), std::make_pair(2, 1), std::make_pair(1, 1)}) {
    auto loaded = run_worker(world, {"reshard", "load", std::to_string(ep)}, dir);
    ASSERT_EQ(loaded.result.exit_code, 0) << loaded.all();
    for (const auto& r : loaded.reports) EXPECT_NE(r.find("\nOK"), std::string::npos) << loaded.all();
  }
}

TEST(Launcher, SetsTheRendezvousVariablesAndStopsTheOthersWhenOneFails) {
  auto dir = scratch("launcher");
  moe::LaunchOptions o;
  o.nproc = 3;
  o.timeout_s = 60;
  o.grace_s = 1;
  auto ok = moe::launch_local(
      {"sh", "-c", "echo $RANK $WORLD_SIZE $LOCAL_RANK $MASTER_ADDR $MASTER_PORT > " + dir.string() + "/r$RANK"}, o);
  ASSERT_EQ(ok.exit_code, 0) << ok.summary;
  for (int r = 0; r < 3; ++r) {
    std::ifstream in(dir / ("r" + std::to_string(r)));
    int rank = -1, world = -1, local = -1, port = -1;
    std::string addr;
    in >> rank >> world >> local >> addr >> port;
    EXPECT_EQ(rank, r);
    EXPECT_EQ(world, 3);
    EXPECT_EQ(local, r);
    EXPECT_EQ(addr, "127.0.0.1");
    EXPECT_GT(port, 0);
  }
  const auto start = std::chrono::steady_clock::now();
  auto failed = moe::launch_local({"sh", "-c", "if [ $RANK = 1 ]; then exit 7; fi; sleep 100"}, o);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(failed.exit_code, 7) << failed.summary;
  EXPECT_EQ(failed.first_failed_rank, 1);
  EXPECT_LT(s, 20) << "the sleeping ranks were not stopped";
  o.timeout_s = 1;
  auto timed_out = moe::launch_local({"sleep", "100"}, o);
  EXPECT_TRUE(timed_out.timed_out);
  EXPECT_EQ(timed_out.exit_code, 124);
  EXPECT_THROW(moe::launch_local({}, o), moe::Error);
}

TEST(DistributedEnv, ReadsTorchrunOpenMpiAndSlurmVariables) {
  std::map<std::string, std::string> torchrun{{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"},
                                              {"MASTER_ADDR", "node7"}, {"MASTER_PORT", "29600"}};
  auto e = moe::read_distributed_env(&torchrun);
  EXPECT_EQ(e.rank, 3);
  EXPECT_EQ(e.world_size, 4);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.master_addr, "node7");
  EXPECT_EQ(e.master_port, 29600);
  EXPECT_EQ(e.source, "torchrun");
  std::map<std::string, std::string> mpi{{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "2"},
                                         {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}, {"MASTER_ADDR", "a"}};
  e = moe::read_distributed_env(&mpi);
  EXPECT_EQ(e.source, "openmpi");
  EXPECT_EQ(e.rank, 1);
  EXPECT_EQ(e.master_port, 29500);
  std::map<std::string, std::string> slurm{{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "1"},
                                           {"MASTER_ADDR", "b"}};
  e = moe::read_distributed_env(&slurm);
  EXPECT_EQ(e.source, "slurm");
  EXPECT_EQ(e.rank, 5);
  EXPECT_EQ(e.world_size, 8);
  std::map<std::string, std::string> none;
  e = moe::read_distributed_env(&none);
  EXPECT_EQ(e.world_size, 1);
  auto error_of = [](std::map<std::string, std::string> v) {
    try {
      moe::read_distributed_env(&v);
    } catch (const moe::Error& err) {
      return std::string(err.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error_of({{"RANK", "4"}, {"WORLD_SIZE", "4"}, {"MASTER_ADDR", "a"}}).find("RANK=4 must be in [0, WORLD_SIZE=4)"),
            std::string::npos);
  EXPECT_NE(error_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}}).find("MASTER_ADDR must be set"), std::string::npos);
  EXPECT_NE(error_of({{"RANK", "x"}, {"WORLD_SIZE", "2"}}).find("RANK='x' is not an integer"), std::string::npos);
  EXPECT_NE(error_of({{"RANK", "0"}}).find("must be set together"), std::string::npos);
  EXPECT_NE(error_of({{"RANK", "0"}, {"WORLD_SIZE", "1"}, {"MASTER_PORT", "70000"}}).find("MASTER_PORT=70000"),
            std::string::npos);
}

TEST(Communicator, LocalBackendAndUnavailableBackendsSayWhy) {
  moe::DistributedEnv env;
  moe::CommunicatorOptions o;
  auto local = moe::make_communicator(o, env);
  EXPECT_EQ(local->size(), 1);
  auto x = at::arange(6, at::kFloat).view({3, 2});
  auto y = at::empty_like(x);
  local->all_to_all_single(y, x, {3}, {3});
  EXPECT_TRUE(y.equal(x));
  EXPECT_TRUE(local->all_gather(x).squeeze(0).equal(x));
  EXPECT_THROW(local->all_to_all_single(y, x, {2}, {3}), moe::Error);
  env.world_size = 2;
  EXPECT_THROW(moe::make_communicator(o, env), moe::Error);
  o.backend = "mpi";
  try {
    moe::make_communicator(o, env);
    ADD_FAILURE() << "no error";
  } catch (const moe::Error& e) {
    EXPECT_NE(std::string(e.what()).find("backend must be one of local, gloo, nccl; got 'mpi'"), std::string::npos);
  }
  if (!MOE_WITH_NCCL) {
    o.backend = "nccl";
    try {
      moe::make_communicator(o, env);
      ADD_FAILURE() << "no error";
    } catch (const moe::Error& e) {
      EXPECT_NE(std::string(e.what()).find("moe was built without CUDA support"), std::string::npos);
    }
  }
}

// The nccl backend at world size 1 on a GPU (a TCP store on loopback, NCCL's own communicator).
TEST(NcclCommunicator, WorldSizeOneCollectives_CUDA) {
  if (!MOE_WITH_NCCL) GTEST_SKIP() << "moe was built without the CUDA tier (the nccl backend needs it)";
  if (!at::hasCUDA()) GTEST_SKIP() << "no GPU visible";
  moe::DistributedEnv env;
  env.master_port = moe::find_free_port();
  moe::CommunicatorOptions o;
  o.backend = "nccl";
  o.timeout_s = 60;
  auto comm = moe::make_communicator(o, env);
  EXPECT_EQ(comm->backend(), "nccl");
  const auto cuda = at::TensorOptions().device(at::kCUDA);
  for (auto dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    auto x = at::randn({7, 5}, cuda.dtype(dtype));
    auto y = at::full_like(x, std::nan(""));
    comm->all_to_all_single(y, x, {7}, {7});
    EXPECT_TRUE(y.equal(x)) << dtype;
  }
  auto empty = at::empty({0, 5}, cuda), empty_out = at::empty({0, 5}, cuda);
  comm->all_to_all_single(empty_out, empty, {0}, {0});
  auto t = at::arange(4, cuda.dtype(at::kFloat));
  comm->all_reduce(t, moe::ReduceOp::kSum);
  EXPECT_TRUE(t.cpu().equal(at::arange(4, at::kFloat)));
  auto g = comm->all_gather(t);
  EXPECT_EQ(g.sizes(), (std::vector<int64_t>{1, 4}));
  comm->broadcast(t, 0);
  comm->barrier();
  auto w = t.clone();
  comm->all_reduce_async(w)->wait();
  EXPECT_TRUE(w.equal(t));
}

}  // namespace
