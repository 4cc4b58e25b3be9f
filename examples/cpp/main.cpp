// An LSTM (2 layers) through rnnfast's C API: forward with a tape, backward, then the same
// sequence one step at a time. Weights and inputs are simple exact formulas, so that the Python
// API can be given the very same numbers (tests/capi/test_capi.py compares every printed value).
#include <cstdio>
#include <vector>

#include "rnnfast.h"

namespace {

// Deterministic values in [-0.25, 0.25], the same in any language: (n mod 101 - 50) / 200.
float value(long n) {
  return static_cast<float>(n % 101 - 50) / 200.0f;
}

void print(const char* name, const std::vector<float>& a) {
  std::printf("%s", name);
  for (float v : a) std::printf(" %.9g", v);
  std::printf("\n");
}

int check(int status, const rnnfast_error& err) {
  if (status != RNNFAST_OK) std::fprintf(stderr, "rnnfast error %d: %s\n", status, err.message);
  return status;
}

}  // namespace

int main() {
  const int64_t steps = 5, batch = 3, input = 4, hidden = 6, layers = 2;
  rnnfast_spec spec = {
      RNNFAST_LSTM, RNNFAST_FLOAT32, input, hidden, layers, 0, 1, 0, 0, RNNFAST_PRECISION_NATIVE};
  rnnfast_error err;
  rnnfast_stack* stack = nullptr;
  if (check(rnnfast_stack_create(&spec, &stack, &err), err)) return 1;
  const int64_t count = rnnfast_param_count(stack);
  std::vector<std::vector<float>> params(count), grads(count);
  std::vector<const void*> p(count);
  std::vector<void*> g(count);
  long n = 0;
  for (int64_t i = 0; i < count; ++i) {
    params[i].resize(rnnfast_param_size(stack, i));
    for (float& v : params[i]) v = value(n++ * 7);
    grads[i].assign(params[i].size(), 0.0f);
    p[i] = params[i].data();
    g[i] = grads[i].data();
  }
  std::vector<float> x(steps * batch * input), dy(steps * batch * hidden);
  for (size_t i = 0; i < x.size(); ++i) x[i] = value(static_cast<long>(i) * 13 + 5);
  for (size_t i = 0; i < dy.size(); ++i) dy[i] = value(static_cast<long>(i) * 3 + 1);
  std::vector<float> y(steps * batch * hidden), h(layers * batch * hidden), c(h.size());
  std::vector<float> dx(x.size()), dh0(h.size()), dc0(h.size());
  rnnfast_tape* tape = nullptr;
  int status = rnnfast_set_params(stack, p.data(), count, &err);
  if (!status)
    status = rnnfast_forward(stack, steps, batch, x.data(), nullptr, nullptr, nullptr, y.data(),
                             h.data(), c.data(), &tape, &err);
  if (!status)
    status = rnnfast_backward(stack, tape, dy.data(), nullptr, nullptr, dx.data(), dh0.data(),
                              dc0.data(), g.data(), count, &err);
  rnnfast_tape_free(tape);
  std::vector<float> hs(h.size(), 0.0f), cs(c.size(), 0.0f), ys(y.size());
  for (int64_t t = 0; !status && t < steps; ++t)
    status = rnnfast_step(stack, batch, x.data() + t * batch * input, hs.data(), cs.data(),
                          ys.data() + t * batch * hidden, &err);
  rnnfast_stack_free(stack);
  if (check(status, err)) return 1;
  print("y", y);
  print("h_n", h);
  print("c_n", c);
  print("dx", dx);
  for (int64_t i = 0; i < count; ++i) print("grad", grads[i]);
  print("y_step", ys);
  std::printf("threads %d\n", rnnfast_get_num_threads());
  return 0;
}
