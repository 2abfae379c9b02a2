// Non-regular files where a file belongs: open_input_file / open_output_file refuse FIFOs,
// directories and devices at once (never blocking in open), and every reader of user files goes
// through them: shards, tokenizer.json, prepare --input, llm.c models, checkpoints, the checkpoint
// listing. A FIFO test that regressed into blocking is killed by alarm() instead of hanging.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/errors.h"
#include "../gtest_util.h"
#include "core/files.h"
#include "data/data.h"
#include "model/llmc_io.h"
#include "train/checkpoint.h"

using namespace mc;
namespace fs = std::filesystem;

namespace {

std::string scratch() { return mc::test::test_scratch("files"); }

std::string make_fifo(const std::string& path) {
  EXPECT_EQ(::mkfifo(path.c_str(), 0644), 0) << path;
  return path;
}

// Runs f under a 10 s alarm: a call that blocks (the bug) kills the test binary with SIGALRM, which
// ctest reports as a failure, instead of hanging the suite.
template <class F>
void within_alarm(F&& f) {
  ::alarm(10);
  f();
  ::alarm(0);
}

// mc::test::expect_usage under within_alarm: a call that blocks fails instead of hanging.
template <class F>
void expect_usage(F&& f, std::initializer_list<std::string> parts) {
  within_alarm([&] { mc::test::expect_usage(f, parts); });
}

}  // namespace

TEST(OpenInputFile, RefusesFifoDirectoryAndDevices) {
  const std::string d = scratch();
  const std::string fifo = make_fifo(d + "/pipe");
  expect_usage([&] { open_input_file(fifo, "--init-from"); }, {"--init-from " + fifo, "not a regular file", "FIFO"});
  expect_usage([&] { open_input_file(d, "--ckpt"); }, {"--ckpt " + d, "not a regular file", "directory"});
  expect_usage([&] { open_input_file("/dev/null", "--init-from"); }, {"/dev/null", "device"});
  expect_usage([&] { open_input_file(d + "/missing", "--input"); }, {"--input " + d + "/missing", "cannot open"});
  expect_usage([&] { open_input_file(d + "/missing", ""); }, {d + "/missing: cannot open"});
}

TEST(OpenInputFile, RegularFileIsBlockingAndReadable) {
  const std::string d = scratch(), p = d + "/f.txt";
  std::ofstream(p) << "hello";
  const int fd = open_input_file(p, "--x");
  ASSERT_GE(fd, 0);
  EXPECT_EQ(::fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
  EXPECT_NE(::fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
  char buf[8] = {};
  EXPECT_EQ(pread_full(fd, buf, sizeof buf, 0, p), 5u);  // short only at end of file
  EXPECT_STREQ(buf, "hello");
  ::close(fd);
  EXPECT_EQ(read_input_file(p, "--x"), "hello");
  expect_usage([&] { read_input_file(p, "--x", 3); }, {"--x " + p, "too large"});
}

TEST(OpenOutputFile, RefusesNonRegularAndMissingDirectory) {
  const std::string d = scratch();
  const std::string fifo = make_fifo(d + "/pipe");
  expect_usage([&] { std::fclose(open_output_file(fifo, "--metrics", false)); }, {"--metrics " + fifo, "FIFO"});
  expect_usage([&] { std::fclose(open_output_file(d, "--metrics", false)); }, {"--metrics " + d, "directory"});
  expect_usage([&] { std::fclose(open_output_file("/dev/null", "--metrics", true)); }, {"/dev/null", "device"});
  expect_usage([&] { std::fclose(open_output_file("/dev/full", "--metrics", false)); }, {"/dev/full", "device"});
  expect_usage([&] { std::fclose(open_output_file(d + "/no/such/m.jsonl", "--metrics", false)); },
               {"--metrics " + d + "/no/such/m.jsonl", "does not exist"});
  expect_usage([&] { check_output_path(d + "/nodir/x.bin", "--out"); }, {"--out", "does not exist"});
  EXPECT_NO_THROW(check_output_path(d + "/new.bin", "--out"));
}

TEST(OpenOutputFile, TruncatesOrAppends) {
  const std::string d = scratch(), p = d + "/m.jsonl";
  std::FILE* f = open_output_file(p, "--metrics", false);
  std::fputs("a\n", f);
  std::fclose(f);
  f = open_output_file(p, "--metrics", true);
  std::fputs("b\n", f);
  std::fclose(f);
  EXPECT_EQ(read_input_file(p, ""), "a\nb\n");
  f = open_output_file(p, "--metrics", false);
  std::fputs("c\n", f);
  std::fclose(f);
  EXPECT_EQ(read_input_file(p, ""), "c\n");
}

TEST(UserFiles, EveryReaderRefusesAFifo) {
  const std::string d = scratch();
  const std::string fifo = make_fifo(d + "/pipe");
  expect_usage([&] { TokenShard s(fifo, 256); }, {fifo, "FIFO"});
  expect_usage([&] { read_llmc_model(fifo); }, {"--init-from " + fifo, "FIFO"});
  expect_usage([&] { load_checkpoint(fifo); }, {fifo, "FIFO"});
  expect_usage([&] { read_checkpoint_meta(fifo); }, {fifo, "FIFO"});
  expect_usage([&] { prepare_text(fifo, d + "/out", "byte"); }, {"--input " + fifo, "FIFO"});
  // tokenizer.json as a FIFO in a data directory.
  fs::create_directories(d + "/data");
  write_shard(d + "/data/train_000000.bin", std::vector<uint16_t>(100, 1));
  make_fifo(d + "/data/tokenizer.json");
  expect_usage([&] { open_data_dir(d + "/data"); }, {d + "/data/tokenizer.json", "FIFO"});
  // gpt2_tokenizer.bin as a FIFO: decoding refuses it rather than blocking.
  make_fifo(d + "/data/gpt2_tokenizer.bin");
  expect_usage([&] { decode_tokens("gpt2", d + "/data", {1}); }, {"gpt2_tokenizer.bin", "FIFO"});
  // A shard that is a FIFO (or a directory) is refused when the directory is listed, and when named directly.
  make_fifo(d + "/data/val_000000.bin");
  fs::remove(d + "/data/tokenizer.json");
  expect_usage([&] { open_data_dir(d + "/data"); }, {"--data " + d + "/data", "val_000000.bin", "FIFO"});
  fs::create_directories(d + "/data2/train_000000.bin");
  expect_usage([&] { open_data_dir(d + "/data2"); }, {"--data " + d + "/data2", "train_000000.bin", "directory"});
  expect_usage([&] { Dataset ds({d + "/data/val_000000.bin"}, 256, 4); }, {"val_000000.bin", "FIFO"});
}

TEST(UserFiles, CheckpointListingSkipsNonRegularFiles) {
  const std::string d = scratch();
  make_fifo(d + "/ckpt_00000009.bin");
  fs::create_directories(d + "/ckpt_00000008.bin");
  std::vector<float> x(3, 1.0f);
  save_checkpoint(d + "/ckpt_00000002.bin", {{"step", 2}}, {{"x", x.data(), x.size()}});
  within_alarm([&] {
    const auto all = list_checkpoints(d);
    ASSERT_EQ(all.size(), 1u);
    EXPECT_EQ(all[0], d + "/ckpt_00000002.bin");
  });
}

// Review (revA): one_line, the one escape that report_error, info's text form and simulate's comment
// lines share (each had its own copy): newlines and carriage returns become \n and \r, nothing else
// changes, and an escape already in the text is left as it is.
TEST(OneLine, EscapesLineBreaksOnly) {
  EXPECT_EQ(one_line("plain"), "plain");
  EXPECT_EQ(one_line("a\nb\r\nc\n"), "a\\nb\\r\\nc\\n");
  EXPECT_EQ(one_line("\n\n"), "\\n\\n");
  EXPECT_EQ(one_line("x\\ny"), "x\\ny");
  EXPECT_EQ(one_line(""), "");
}
