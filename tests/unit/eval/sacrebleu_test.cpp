// BLEU and chrF against sacreBLEU 2.6.0's golden vectors (shared/data/bleu.md): the 13a tokenizer
// vectors, the sacreBLEU README example, single-segment cases S1-S8 with every smoothing method, and
// the corpus vectors V1-V6 on the shared corpora (skipped when shared/data is absent).
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "errors.h"
#include "moe/eval/sacrebleu.h"

namespace moe {
namespace {

TEST(Tokenizer13aTest, GoldenVectors) {
  EXPECT_EQ(tokenize_13a("Hello, world! It's 3.5 km -- the 5-year plan (costing $1,000.50) ends."),
            "Hello , world ! It's 3.5 km -- the 5 - year plan ( costing $ 1,000.50 ) ends .");
  EXPECT_EQ(tokenize_13a("AT&amp;T &quot;rocks&quot; &lt;b&gt; &amp;lt;"), "AT & T \" rocks \" < b > <");
  EXPECT_EQ(tokenize_13a("Ceci est « génial » — n'est-ce pas ? 1.000,50 €"),
            "Ceci est « génial » — n'est-ce pas ? 1.000,50 €");
  EXPECT_EQ(tokenize_13a("a\u00a0b\u2009c\u200bd"), "a b c\u200bd");
  EXPECT_EQ(tokenize_13a("Mr. Smith's e-mail: j.doe@x.com/path?q=1#frag ~ ^_` [x] {y} |z|"),
            "Mr . Smith's e-mail : j . doe @ x . com / path ? q = 1 # frag ~ ^ _ ` [ x ] { y } | z |");
  EXPECT_EQ(tokenize_13a("..., ;; 3., .5 a.b 1.2.3 x,y 4,5 end."), ". . . , ; ; 3 . , . 5 a . b 1.2.3 x , y 4,5 end .");
  EXPECT_EQ(tokenize_13a("我爱北京天安门。 東京、日本"), "我爱北京天安门。 東京、日本");
  EXPECT_EQ(tokenize_13a("  padded\t "), "padded");
  EXPECT_EQ(tokenize_13a("<skipped> 2-3 x-ray -5 5- a--b"), "2 - 3 x-ray -5 5 - a--b");
  EXPECT_EQ(rstrip_whitespace("x \u3000\r"), "x");
  EXPECT_EQ(split_whitespace("a\u2028b \u200b").size(), 3u);  // U+200B is not whitespace: a token
}

const std::vector<std::string> kHyps{"The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."};
const std::vector<std::string> kRefs1{"The dog bit the man.", "It was not unexpected.", "The man bit him first."};
const std::vector<std::string> kRefs2{"The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."};

TEST(BleuTest, SacreBleuReadmeExample) {
  auto two = corpus_bleu(kHyps, {kRefs1, kRefs2});
  EXPECT_NEAR(two.score, 48.530827, 5e-7);
  EXPECT_EQ(two.stats.correct, (std::array<int64_t, 4>{14, 7, 5, 3}));
  EXPECT_EQ(two.stats.total, (std::array<int64_t, 4>{17, 14, 11, 8}));
  EXPECT_EQ(two.stats.sys_len, 17);
  EXPECT_EQ(two.stats.ref_len, 18);
  EXPECT_EQ(two.to_string(), "BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)");
  EXPECT_NEAR(corpus_bleu(kHyps, {kRefs1}).score, 45.067506, 5e-7);
  EXPECT_NEAR(corpus_chrf(kHyps, {kRefs1, kRefs2}).score, 59.727518, 5e-7);
  ChrFOptions plus;
  plus.word_order = 2;
  EXPECT_NEAR(corpus_chrf(kHyps, {kRefs1, kRefs2}, plus).score, 59.153104, 5e-7);
  EXPECT_EQ(BleuOptions().signature(2), "nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0");
  EXPECT_EQ(plus.name(), "chrF2++");
  EXPECT_EQ(plus.signature(1), "nrefs:1|case:mixed|eff:yes|nc:6|nw:2|space:no|version:2.6.0");
}

struct Segment {
  const char* id;
  std::string hyp;
  std::vector<std::string> refs;
  double corpus, sentence, chrf;
};

TEST(BleuTest, SingleSegmentGoldenVectors) {
  const std::vector<Segment> cases{
      {"S1", "The cat sat on the mat.", {"The cat is on the mat."}, 48.892302, 48.892302, 67.172735},
      {"S2", "Hello there", {"Hello there general Kenobi"}, 0.0, 36.787944, 41.431530},
      {"S3", "", {"something here"}, 0.0, 0.0, 0.0},
      {"S4", "a b c d e", {"a x c y e"}, 14.058533, 14.058533, 12.000000},
      {"S5", "a b c d e", {"a b c d", "a b c d e f"}, 100.0, 100.0, 91.367713},
      {"S6", "x y z", {"a b c"}, 0.0, 0.0, 0.0},
      {"S7", "the the the the the the the", {"The cat is on the mat ."}, 6.567275, 6.567275, 10.585480},
      {"S8", "It costs $1,000.50, i.e. 5-6 items.", {"It costs $ 1,000.50 , i.e. 5 - 6 items ."}, 100.0, 100.0, 100.0},
  };
  for (const auto& c : cases) {
    RefStreams refs;
    for (const auto& r : c.refs) refs.push_back({r});
    EXPECT_NEAR(corpus_bleu({c.hyp}, refs).score, c.corpus, 5e-7) << c.id;
    EXPECT_NEAR(sentence_bleu(c.hyp, c.refs).score, c.sentence, 5e-7) << c.id;
    if (c.refs.size() == 1) {
      EXPECT_NEAR(corpus_chrf({c.hyp}, refs).score, c.chrf, 5e-7) << c.id;
    }
  }
  EXPECT_EQ(bleu_segment_stats("a b c d e", {"a b c d", "a b c d e f"}).ref_len, 4);  // tie -> shorter
  EXPECT_NEAR(corpus_chrf({"a b c d e"}, {{"a b c d"}, {"a b c d e f"}}).score, 91.367713, 5e-7);  // S5, 2 refs
  EXPECT_NEAR(corpus_bleu({"Hello there"}, {{"Hello there general Kenobi"}}).bp, 0.367879, 5e-7);
  auto s4 = [](const std::string& method) {
    BleuOptions o;
    o.smooth_method = method;
    return corpus_bleu({"a b c d e"}, {{"a x c y e"}}, o).score;
  };
  EXPECT_NEAR(s4("floor"), 7.071068, 5e-7);
  EXPECT_NEAR(s4("add-k"), 31.622777, 5e-7);
  EXPECT_EQ(s4("none"), 0.0);
  BleuOptions lower;
  lower.lowercase = true;
  EXPECT_NEAR(corpus_bleu({"THE Cat sat on the mat."}, {{"The cat is on the mat."}}, lower).score, 48.892302, 5e-7);
  EXPECT_EQ(testing::error_of([] { corpus_bleu({"a", "b"}, {{"a"}}); }),
            "corpus_bleu: reference stream 1 has 1 lines but the hypotheses have 2");
  BleuOptions bad;
  bad.smooth_method = "laplace";
  EXPECT_EQ(testing::error_of([&] { corpus_bleu({"a"}, {{"a"}}, bad); }),
            "BleuOptions.smooth_method must be one of exp, floor, add-k, none; got 'laplace'");
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

struct CorpusVector {
  const char* id;
  const char* hyp;
  std::vector<const char*> refs;
  double bleu;
  std::array<int64_t, 4> correct, total;
  int64_t sys_len, ref_len;
  double chrf2, chrf2pp;
};

TEST(BleuTest, CorpusGoldenVectorsOnSharedData) {
  const char* env = std::getenv("MOE_SHARED_DATA");
  const std::string root = env != nullptr ? env : "../shared/data";
  if (!std::ifstream(root + "/multi30k/valid.en")) GTEST_SKIP() << "shared/data not found at " << root;
  const std::vector<CorpusVector> vectors{
      {"V1", "multi30k/valid.fr", {"multi30k/valid.en"}, 0.487827, {1405, 72, 16, 8}, {13870, 12856, 11842, 10828}, 13870, 13289, 19.096595, 15.694538},
      {"V2", "multi30k/valid.de", {"multi30k/valid.en"}, 0.492163, {1405, 33, 18, 13}, {12825, 11811, 10797, 9783}, 12825, 13289, 17.931072, 14.816399},
      {"V3", "mafand-mt/en-pcm/valid.pcm", {"mafand-mt/en-pcm/valid.en"}, 17.669324, {17415, 8350, 4662, 2931}, {40047, 38563, 37080, 35599}, 40047, 37512, 48.833581, 45.085603},
      {"V4", "multi30k/valid.en", {"multi30k/valid.de", "multi30k/valid.fr"}, 0.784922, {1749, 89, 27, 17}, {13289, 12275, 11261, 10247}, 13289, 13104, 18.300574, 15.212966},
      {"V5", "wmt-news/en-de/valid.en", {"wmt-news/en-de/valid.de"}, 3.338116, {11789, 2761, 1049, 465}, {64399, 61395, 58391, 55387}, 64399, 61287, 23.490431, 20.278545},
      {"V6", "wmt-news/en-de/valid.de", {"wmt-news/en-de/valid.de"}, 100.0, {61287, 58283, 55279, 52275}, {61287, 58283, 55279, 52275}, 61287, 61287, 100.0, 100.0},
  };
  for (const auto& v : vectors) {
    auto hyps = read_lines(root + "/" + v.hyp);
    RefStreams refs;
    for (const char* r : v.refs) refs.push_back(read_lines(root + "/" + r));
    auto bleu = corpus_bleu(hyps, refs);
    EXPECT_NEAR(bleu.score, v.bleu, 5e-7) << v.id;
    EXPECT_EQ(bleu.stats.correct, v.correct) << v.id;
    EXPECT_EQ(bleu.stats.total, v.total) << v.id;
    EXPECT_EQ(bleu.stats.sys_len, v.sys_len) << v.id;
    EXPECT_EQ(bleu.stats.ref_len, v.ref_len) << v.id;
    EXPECT_NEAR(corpus_chrf(hyps, refs).score, v.chrf2, 5e-7) << v.id;
    ChrFOptions plus;
    plus.word_order = 2;
    EXPECT_NEAR(corpus_chrf(hyps, refs, plus).score, v.chrf2pp, 5e-7) << v.id;
  }
}

}  // namespace
}  // namespace moe
