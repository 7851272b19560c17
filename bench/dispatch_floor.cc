// The floor under any binding's per-op cost: at::add of two 4-element tensors called straight from
// C++ (and through the boxed dispatcher, as our addon does), one thread. bench/tensor-engine.ts
// compiles and runs this beside the Node and Python measurements.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

int main() {
  at::set_num_threads(1);
  const auto a = at::ones({4});
  const auto b = at::ones({4});
  const int n = 100000;
  const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("aten::add", "Tensor");
  double best_direct = 1e9, best_boxed = 1e9;
  for (int r = 0; r < 5; r++) {
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; i++) {
      auto c = at::add(a, b);
    }
    auto t1 = std::chrono::steady_clock::now();
    torch::jit::Stack stack;
    for (int i = 0; i < n; i++) {
      stack.clear();
      stack.emplace_back(a);
      stack.emplace_back(b);
      stack.emplace_back(c10::Scalar(1));
      op.callBoxed(stack);
    }
    auto t2 = std::chrono::steady_clock::now();
    best_direct = std::min(best_direct, std::chrono::duration<double, std::micro>(t1 - t0).count() / n);
    best_boxed = std::min(best_boxed, std::chrono::duration<double, std::micro>(t2 - t1).count() / n);
  }
  std::printf("{\"direct\": %.4f, \"boxed\": %.4f}\n", best_direct, best_boxed);
  return 0;
}
