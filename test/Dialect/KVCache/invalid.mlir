// Every verifier branch of the kvcache dialect, with its exact message.
// RUN: kvmerge-opt %s -split-input-file -verify-diagnostics

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{sigma must be a finite positive number, got -1}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, ratio = 0.5, sigma = -1.0>} : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32> -> tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{expected 'auto', 'paper' or a number for sigma, got 'wide'}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, ratio = 0.5, sigma = wide>} : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32> -> tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return
}

// -----

// expected-error @+1 {{sigma must be a finite positive number, got 0}}
func.func @f() attributes {s = #kvcache.sigma<0.0>} {
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{unknown policy 'lru', expected one of full, streaming, h2o, kvmerger}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<lru, ratio = 0.5>} : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32> -> tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{policy parameter 'ratio' given twice}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<h2o, ratio = 0.5, ratio = 0.4>} : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32> -> tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{unknown mode 'greedy', expected 'budget' or 'threshold'}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, ratio = 0.5, mode = greedy>} : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32> -> tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{unknown policy parameter 'window', expected ratio, slots, sink, recent, heavy, mode, eps or sigma}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, ratio = 0.5, window = 3>} : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32> -> tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{policy 'full' keeps every token and takes no 'ratio' or 'slots'}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<full, ratio = 0.5>} : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32> -> tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{policy 'h2o' takes exactly one of 'ratio' and 'slots', got both}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<h2o, ratio = 0.5, slots = 8>} : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32> -> tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{policy 'kvmerger' needs a budget: give 'ratio' or 'slots'}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger>} : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32> -> tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{'ratio' must be in (0, 1], got 1.5}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, ratio = 1.5>} : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32> -> tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{'ratio' must be in (0, 1], got 0}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, ratio = 0.0>} : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32> -> tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{'slots' must be at least 1, got 0}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, slots = 0>} : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32> -> tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{'sink' must be non-negative, got -1}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, ratio = 0.5, sink = -1>} : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32> -> tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{policy 'streaming' keeps the budget minus 'sink' newest tokens; 'recent' does not apply}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<streaming, slots = 8, recent = 2>} : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32> -> tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{'recent' must be non-negative, got -2}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<h2o, ratio = 0.5, recent = -2>} : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32> -> tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return
}

// -----

// Issue 16: counts past i32 (and sums that would overflow int64) are refused.
func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{'sink' must be at most 2147483647 (positions and lengths are i32), got 9223372036854775807}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, slots = 8, sink = 9223372036854775807>} : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32> -> tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return
}

// -----

// Issue 16: counts past i32 (and sums that would overflow int64) are refused.
func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{'recent' must be at most 2147483647 (positions and lengths are i32), got 4611686018427387904}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<h2o, slots = 8, recent = 4611686018427387904>} : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32> -> tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return
}

// -----

// Issue 16: counts past i32 (and sums that would overflow int64) are refused.
func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{'sink' must be at most 2147483647 (positions and lengths are i32), got 4611686018427387904}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<h2o, slots = 8, sink = 4611686018427387904, recent = 4611686018427387904>} : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32> -> tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return
}

// -----

// Issue 16: counts past i32 (and sums that would overflow int64) are refused.
func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{'slots' must be at most 2147483647 (positions and lengths are i32), got 2147483648}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, slots = 2147483648>} : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32> -> tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{'eps' is a cosine similarity and must be in [-1, 1], got 1.5}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, ratio = 0.5, eps = 1.5>} : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32> -> tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{'kvcache.compress' op budget of 3 slots is smaller than 'sink' (4)}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<streaming, slots = 3>} : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32> -> tensor<2x3x8xf32>, tensor<2x3x8xf32>, tensor<2x3xi32>, tensor<2x3xi32>, tensor<2x3xf32>, tensor<2xi32>
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{'kvcache.compress' op budget of 8 slots leaves no slot for the middle after sink (4) and recent (4)}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<h2o, slots = 8, sink = 4, recent = 4>} : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32> -> tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return
}

// -----

func.func @f(%k: tensor<16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{'kvcache.compress' op keys must have rank 3 [Hkv, L, D], got rank 2}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, slots = 8>} : tensor<16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32> -> tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{'kvcache.compress' op values must have rank 3 [Hkv, L, Dv], got rank 2}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, slots = 8>} : tensor<2x16x8xf32>, tensor<2x16xf32>, tensor<2x16xf32> -> tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x15x8xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{'kvcache.compress' op keys and values must agree on KV heads and tokens, got keys [2, 16, 8] and values [2, 15, 8]}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, slots = 8>} : tensor<2x16x8xf32>, tensor<2x15x8xf32>, tensor<2x16xf32> -> tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<3x16xf32>) {
  // expected-error @+1 {{'kvcache.compress' op scores must have shape [2, 16] [Hkv, L], got [3, 16]}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, slots = 8>} : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<3x16xf32> -> tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{'kvcache.compress' op compressed keys must have shape [2, ?, 8] [Hkv, B, D], got [2, 8, 4]}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, slots = 8>} : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32> -> tensor<2x8x4xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{'kvcache.compress' op compressed values must have shape [2, 8, 8] [Hkv, B, Dv], got [2, 7, 8]}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, slots = 8>} : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32> -> tensor<2x8x8xf32>, tensor<2x7x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{'kvcache.compress' op positions must have shape [2, 8] [Hkv, B], got [2, 9]}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, slots = 8>} : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32> -> tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x9xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{'kvcache.compress' op counts must have shape [2, 8] [Hkv, B], got [1, 8]}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, slots = 8>} : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32> -> tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<1x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{'kvcache.compress' op compressed scores must have rank 2 [Hkv, B], got rank 3}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, slots = 8>} : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32> -> tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8x1xf32>, tensor<2xi32>
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{'kvcache.compress' op lengths must have shape [2] [Hkv], got [3]}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, slots = 8>} : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32> -> tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<3xi32>
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{'kvcache.compress' op compressed keys/values must keep the cache element types ('f32', 'f32'), got 'f16', 'f32'}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, slots = 8>} : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32> -> tensor<2x8x8xf16>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{'kvcache.compress' op policy 'full' keeps all 16 tokens, but the result capacity is 8 slots}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<full>} : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32> -> tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{'kvcache.compress' op budget of 12 slots is larger than the result capacity (8 slots)}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, slots = 12>} : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32> -> tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{'kvcache.compress' op result capacity (8 slots) must equal the budget of 6 slots}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, slots = 6, sink = 1>} : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32> -> tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{'kvcache.compress' op ratio 0.25 of 16 tokens is a budget of 4 slots, but the result capacity is 8 slots}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, ratio = 0.25>} : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32> -> tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{'kvcache.compress' op budget of 8 slots leaves no slot for the middle after sink (4) and recent (4)}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<h2o, ratio = 0.5, recent = 4>} : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32> -> tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>) {
  // expected-error @+1 {{'kvcache.compress' op budget of 8 slots is smaller than 'sink' (9)}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<streaming, ratio = 0.5, sink = 9>} : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32> -> tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return
}

// -----

func.func @f(%k: tensor<16x8xf32>) {
  // expected-error @+1 {{'kvcache.similarity' op keys must have rank 3 [Hkv, L, D], got rank 2}}
  %s = kvcache.similarity %k : tensor<16x8xf32> -> tensor<2x15xf32>
  return
}

// -----

func.func @f(%k: tensor<2x0x8xf32>) {
  // expected-error @+1 {{'kvcache.similarity' op needs at least one token, got L = 0}}
  %s = kvcache.similarity %k : tensor<2x0x8xf32> -> tensor<2x0xf32>
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'kvcache.similarity' op result must have shape [2, 15] [Hkv, L - 1], got [2, 16]}}
  %s = kvcache.similarity %k : tensor<2x16x8xf32> -> tensor<2x16xf32>
  return
}

// -----

func.func @f(%k: tensor<2x16x8xi32>) {
  // expected-error @+1 {{'kvcache.similarity' op operand #0 must be ranked tensor of 16-bit float or bfloat16 type or 32-bit float or 64-bit float values, but got 'tensor<2x16x8xi32>'}}
  %s = kvcache.similarity %k : tensor<2x16x8xi32> -> tensor<2x15xf32>
  return
}

// -----

func.func @f(%s: tensor<15xf32>) {
  // expected-error @+1 {{'kvcache.merge_sets' op similarity must have rank 2 [Hkv, L - 1], got rank 1}}
  %0:2 = kvcache.merge_sets %s sink(4) recent(4) middle(4) mode(budget) : tensor<15xf32> -> tensor<2x16xi32>, tensor<2xi32>
  return
}

// -----

func.func @f(%s: tensor<2x15xf32>) {
  // expected-error @+1 {{'kvcache.merge_sets' op 'middle' must be at least 1 slot, got 0}}
  %0:2 = kvcache.merge_sets %s sink(4) recent(4) middle(0) mode(budget) : tensor<2x15xf32> -> tensor<2x16xi32>, tensor<2xi32>
  return
}

// -----

func.func @f(%s: tensor<2x15xf32>) {
  // expected-error @+1 {{'kvcache.merge_sets' op 'eps' is a cosine similarity and must be in [-1, 1], got -1.5}}
  %0:2 = kvcache.merge_sets %s sink(4) recent(4) middle(4) mode(threshold) eps(-1.5) : tensor<2x15xf32> -> tensor<2x16xi32>, tensor<2xi32>
  return
}

// -----

func.func @f(%s: tensor<2x15xf32>) {
  // expected-error @+1 {{'kvcache.merge_sets' op slot map must have shape [2, 16] [Hkv, L], got [2, 15]}}
  %0:2 = kvcache.merge_sets %s sink(4) recent(4) middle(4) mode(budget) : tensor<2x15xf32> -> tensor<2x15xi32>, tensor<2xi32>
  return
}

// -----

func.func @f(%s: tensor<2x15xf32>) {
  // expected-error @+1 {{'kvcache.merge_sets' op lengths must have shape [2] [Hkv], got [1]}}
  %0:2 = kvcache.merge_sets %s sink(4) recent(4) middle(4) mode(budget) : tensor<2x15xf32> -> tensor<2x16xi32>, tensor<1xi32>
  return
}

// -----

func.func @f(%s: tensor<2x15xf32>) {
  // expected-error @+1 {{'kvcache.merge_sets' op sink (10) + recent (7) exceed the 16 tokens of the cache}}
  %0:2 = kvcache.merge_sets %s sink(10) recent(7) middle(4) mode(budget) : tensor<2x15xf32> -> tensor<2x16xi32>, tensor<2xi32>
  return
}

// -----

func.func @f(%s: tensor<2x15xf32>) {
  // expected-error @+1 {{'kvcache.merge_sets' op attribute 'sink' failed to satisfy constraint: 64-bit signless integer attribute whose value is non-negative}}
  %0:2 = kvcache.merge_sets %s sink(-1) recent(4) middle(4) mode(budget) : tensor<2x15xf32> -> tensor<2x16xi32>, tensor<2xi32>
  return
}

// -----

func.func @f(%s: tensor<2x15xf32>) {
  // expected-error @+1 {{'kvcache.merge_sets' op 'sink' must be in [0, 2147483647] (positions and lengths are i32), got 9223372036854775807}}
  %0:2 = kvcache.merge_sets %s sink(9223372036854775807) recent(9223372036854775807) middle(4) mode(budget) : tensor<2x15xf32> -> tensor<2x16xi32>, tensor<2xi32>
  return
}

// -----

func.func @f(%s: tensor<2x?xf32>) {
  // expected-error @+1 {{'kvcache.merge_sets' op 'middle' must be at least 1 slot, got -1}}
  %0:2 = kvcache.merge_sets %s sink(4) recent(4) middle(-1) mode(budget) : tensor<2x?xf32> -> tensor<2x?xi32>, tensor<2xi32>
  return
}

// -----

func.func @f(%a: tensor<2x?xf32>) {
  // expected-error @+1 {{'kvcache.select_sets' op 'recent' must be in [0, 2147483647] (positions and lengths are i32), got 4294967296}}
  %0:2 = kvcache.select_sets %a sink(4) recent(4294967296) middle(0) : tensor<2x?xf32> -> tensor<2x?xi32>, tensor<2xi32>
  return
}

// -----

func.func @f(%s: tensor<2x15xf32>) {
  // expected-error @+1 {{unknown mode 'greedy', expected 'budget' or 'threshold'}}
  %0:2 = kvcache.merge_sets %s sink(4) recent(4) middle(4) mode(greedy) : tensor<2x15xf32> -> tensor<2x16xi32>, tensor<2xi32>
  return
}

// -----

func.func @f(%a: tensor<16xf32>) {
  // expected-error @+1 {{'kvcache.select_sets' op scores must have rank 2 [Hkv, L], got rank 1}}
  %0:2 = kvcache.select_sets %a sink(4) recent(4) middle(4) : tensor<16xf32> -> tensor<2x16xi32>, tensor<2xi32>
  return
}

// -----

func.func @f(%a: tensor<2x16xf32>) {
  // expected-error @+1 {{'kvcache.select_sets' op sink (4) + recent (13) exceed the 16 tokens of the cache}}
  %0:2 = kvcache.select_sets %a sink(4) recent(13) middle(0) : tensor<2x16xf32> -> tensor<2x16xi32>, tensor<2xi32>
  return
}

// -----

func.func @f(%a: tensor<2x16xf32>) {
  // expected-error @+1 {{'kvcache.select_sets' op slot map must have shape [2, 16] [Hkv, L], got [2, 8]}}
  %0:2 = kvcache.select_sets %a sink(4) recent(4) middle(0) : tensor<2x16xf32> -> tensor<2x8xi32>, tensor<2xi32>
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x15xf32>, %s: tensor<2x16xi32>, %l: tensor<2xi32>,
             %k0: tensor<2x8x8xf32>, %p0: tensor<2x8xi32>, %s0: tensor<2x8xf32>) {
  // expected-error @+1 {{'kvcache.merge' op scores must have shape [2, 16] [Hkv, L], got [2, 15]}}
  %0:5 = kvcache.merge ins(%k, %v, %a : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x15xf32>) slots(%s, %l : tensor<2x16xi32>, tensor<2xi32>)
      outs(%k0, %k0, %p0, %p0, %s0 : tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>)
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>, %s: tensor<2x17xi32>, %l: tensor<2xi32>,
             %k0: tensor<2x8x8xf32>, %p0: tensor<2x8xi32>, %s0: tensor<2x8xf32>) {
  // expected-error @+1 {{'kvcache.merge' op slot map must have shape [2, 16] [Hkv, L], got [2, 17]}}
  %0:5 = kvcache.merge ins(%k, %v, %a : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32>) slots(%s, %l : tensor<2x17xi32>, tensor<2xi32>)
      outs(%k0, %k0, %p0, %p0, %s0 : tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>)
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>, %s: tensor<2x16xi32>, %l: tensor<2x1xi32>,
             %k0: tensor<2x8x8xf32>, %p0: tensor<2x8xi32>, %s0: tensor<2x8xf32>) {
  // expected-error @+1 {{'kvcache.merge' op lengths must have rank 1 [Hkv], got rank 2}}
  %0:5 = kvcache.merge ins(%k, %v, %a : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32>) slots(%s, %l : tensor<2x16xi32>, tensor<2x1xi32>)
      outs(%k0, %k0, %p0, %p0, %s0 : tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>)
  return
}

// -----

func.func @f(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>, %s: tensor<2x16xi32>, %l: tensor<2xi32>,
             %k0: tensor<3x8x8xf32>, %p0: tensor<2x8xi32>, %s0: tensor<2x8xf32>) {
  // expected-error @+1 {{'kvcache.merge' op compressed keys must have shape [2, ?, 8] [Hkv, B, D], got [3, 8, 8]}}
  %0:5 = kvcache.merge ins(%k, %v, %a : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32>) slots(%s, %l : tensor<2x16xi32>, tensor<2xi32>)
      outs(%k0, %k0, %p0, %p0, %s0 : tensor<3x8x8xf32>, tensor<3x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>)
  return
}

// -----

func.func @f(%q: tensor<4x16xf32>, %k: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'kvcache.accumulated_scores' op queries must have rank 3 [Hq, L, D], got rank 2}}
  %0 = kvcache.accumulated_scores %q, %k  : tensor<4x16xf32>, tensor<2x16x8xf32> -> tensor<2x16xf32>
  return
}

// -----

func.func @f(%q: tensor<4x16x8xf32>, %k: tensor<2x16x8x1xf32>) {
  // expected-error @+1 {{'kvcache.accumulated_scores' op keys must have rank 3 [Hkv, L, D], got rank 4}}
  %0 = kvcache.accumulated_scores %q, %k  : tensor<4x16x8xf32>, tensor<2x16x8x1xf32> -> tensor<2x16xf32>
  return
}

// -----

func.func @f(%q: tensor<3x16x8xf32>, %k: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'kvcache.accumulated_scores' op number of query heads (3) must be a multiple of the number of KV heads (2)}}
  %0 = kvcache.accumulated_scores %q, %k  : tensor<3x16x8xf32>, tensor<2x16x8xf32> -> tensor<2x16xf32>
  return
}

// -----

func.func @f(%q: tensor<4x16x4xf32>, %k: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'kvcache.accumulated_scores' op head-dim mismatch between queries (4) and keys (8)}}
  %0 = kvcache.accumulated_scores %q, %k  : tensor<4x16x4xf32>, tensor<2x16x8xf32> -> tensor<2x16xf32>
  return
}

// -----

func.func @f(%q: tensor<4x12x8xf32>, %k: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'kvcache.accumulated_scores' op queries and keys must cover the same tokens, got 12 and 16}}
  %0 = kvcache.accumulated_scores %q, %k  : tensor<4x12x8xf32>, tensor<2x16x8xf32> -> tensor<2x16xf32>
  return
}

// -----

func.func @f(%q: tensor<4x16x8xf32>, %k: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'kvcache.accumulated_scores' op observation window (17) is longer than the 16 tokens}}
  %0 = kvcache.accumulated_scores %q, %k window(17) : tensor<4x16x8xf32>, tensor<2x16x8xf32> -> tensor<2x16xf32>
  return
}

// -----

func.func @f(%q: tensor<4x16x8xf32>, %k: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'kvcache.accumulated_scores' op 'scale' must be a finite positive number, got -0.5}}
  %0 = kvcache.accumulated_scores %q, %k scale(-0.5) : tensor<4x16x8xf32>, tensor<2x16x8xf32> -> tensor<2x16xf32>
  return
}

// -----

func.func @f(%q: tensor<4x16x8xf32>, %k: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'kvcache.accumulated_scores' op result must have shape [2, 16] [Hkv, L], got [4, 16]}}
  %0 = kvcache.accumulated_scores %q, %k  : tensor<4x16x8xf32>, tensor<2x16x8xf32> -> tensor<4x16xf32>
  return
}

// -----

func.func @f(%q: tensor<4x16x8xf32>, %k: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'kvcache.accumulated_scores' op attribute 'window' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  %0 = kvcache.accumulated_scores %q, %k window(0) : tensor<4x16x8xf32>, tensor<2x16x8xf32> -> tensor<2x16xf32>
  return
}

// -----

func.func @f(%q: tensor<4x8xf32>, %k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %o: tensor<4x1x8xf32>) {
  // expected-error @+1 {{'kvcache.attention' op query must have rank 3 [Hq, Lq, D], got rank 2}}
  %0 = kvcache.attention ins(%q, %k, %v : tensor<4x8xf32>, tensor<2x16x8xf32>, tensor<2x16x8xf32>)  outs(%o : tensor<4x1x8xf32>) 
  return
}

// -----

func.func @f(%q: tensor<4x1x8xf32>, %k: tensor<2x16x8xf32>, %v: tensor<2x15x8xf32>, %o: tensor<4x1x8xf32>) {
  // expected-error @+1 {{'kvcache.attention' op keys and values must agree on KV heads and tokens, got keys [2, 16, 8] and values [2, 15, 8]}}
  %0 = kvcache.attention ins(%q, %k, %v : tensor<4x1x8xf32>, tensor<2x16x8xf32>, tensor<2x15x8xf32>)  outs(%o : tensor<4x1x8xf32>) 
  return
}

// -----

func.func @f(%q: tensor<5x1x8xf32>, %k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %o: tensor<5x1x8xf32>) {
  // expected-error @+1 {{'kvcache.attention' op number of query heads (5) must be a multiple of the number of KV heads (2)}}
  %0 = kvcache.attention ins(%q, %k, %v : tensor<5x1x8xf32>, tensor<2x16x8xf32>, tensor<2x16x8xf32>)  outs(%o : tensor<5x1x8xf32>) 
  return
}

// -----

func.func @f(%q: tensor<4x1x16xf32>, %k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %o: tensor<4x1x8xf32>) {
  // expected-error @+1 {{'kvcache.attention' op head-dim mismatch between queries (16) and keys (8)}}
  %0 = kvcache.attention ins(%q, %k, %v : tensor<4x1x16xf32>, tensor<2x16x8xf32>, tensor<2x16x8xf32>)  outs(%o : tensor<4x1x8xf32>) 
  return
}

// -----

func.func @f(%q: tensor<4x1x8xf32>, %k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %o: tensor<4x1x8xf32>, %l: tensor<4xi32>) {
  // expected-error @+1 {{'kvcache.attention' op lengths must have shape [2] [Hkv], got [4]}}
  %0 = kvcache.attention ins(%q, %k, %v : tensor<4x1x8xf32>, tensor<2x16x8xf32>, tensor<2x16x8xf32>) lengths(%l : tensor<4xi32>) outs(%o : tensor<4x1x8xf32>) 
  return
}

// -----

func.func @f(%q: tensor<4x1x8xf32>, %k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %o: tensor<4x1x8xf32>, %c: tensor<2x8xi32>) {
  // expected-error @+1 {{'kvcache.attention' op counts must have shape [2, 16] [Hkv, S], got [2, 8]}}
  %0 = kvcache.attention ins(%q, %k, %v : tensor<4x1x8xf32>, tensor<2x16x8xf32>, tensor<2x16x8xf32>) counts(%c : tensor<2x8xi32>) outs(%o : tensor<4x1x8xf32>) 
  return
}

// -----

func.func @f(%q: tensor<4x1x8xf32>, %k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %o: tensor<4x1x8xf32>) {
  // expected-error @+1 {{'kvcache.attention' op 'count_bias' needs a 'counts' operand}}
  %0 = kvcache.attention ins(%q, %k, %v : tensor<4x1x8xf32>, tensor<2x16x8xf32>, tensor<2x16x8xf32>)  outs(%o : tensor<4x1x8xf32>) count_bias
  return
}

// -----

func.func @f(%q: tensor<4x1x8xf32>, %k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %o: tensor<4x1x8xf32>) {
  // expected-error @+1 {{'kvcache.attention' op 'scale' must be a finite positive number, got 0}}
  %0 = kvcache.attention ins(%q, %k, %v : tensor<4x1x8xf32>, tensor<2x16x8xf32>, tensor<2x16x8xf32>)  outs(%o : tensor<4x1x8xf32>) scale(0.0)
  return
}

// -----

func.func @f(%q: tensor<4x17x8xf32>, %k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %o: tensor<4x17x8xf32>) {
  // expected-error @+1 {{'kvcache.attention' op causal attention of 17 queries needs at least as many slots, got 16}}
  %0 = kvcache.attention ins(%q, %k, %v : tensor<4x17x8xf32>, tensor<2x16x8xf32>, tensor<2x16x8xf32>)  outs(%o : tensor<4x17x8xf32>) causal
  return
}

// -----

func.func @f(%q: tensor<4x1x8xf32>, %k: tensor<2x16x8xf32>, %v: tensor<2x16x4xf32>, %o: tensor<4x1x8xf32>) {
  // expected-error @+1 {{'kvcache.attention' op output must have shape [4, 1, 4] [Hq, Lq, Dv], got [4, 1, 8]}}
  %0 = kvcache.attention ins(%q, %k, %v : tensor<4x1x8xf32>, tensor<2x16x8xf32>, tensor<2x16x4xf32>)  outs(%o : tensor<4x1x8xf32>) 
  return
}

// -----

// A budget with no room for a middle is fine while the cache fits (L <= B).
func.func @fits(%k: tensor<2x6x8xf32>, %v: tensor<2x6x8xf32>, %a: tensor<2x6xf32>) -> tensor<2xi32> {
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<h2o, slots = 8, sink = 4, recent = 4>} : tensor<2x6x8xf32>, tensor<2x6x8xf32>, tensor<2x6xf32> -> tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return %0#5 : tensor<2xi32>
}

// -----

func.func @f(%q: tensor<4x1x8xf32>, %k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %o: tensor<4x1x8xf32>, %a: tensor<2x15xf32>) {
  // expected-error @+1 {{'kvcache.attention' op scores must have shape [2, 16] [Hkv, S], got [2, 15]}}
  %0:2 = kvcache.attention ins(%q, %k, %v : tensor<4x1x8xf32>, tensor<2x16x8xf32>, tensor<2x16x8xf32>) outs(%o, %a : tensor<4x1x8xf32>, tensor<2x15xf32>)
  return
}

// -----

func.func @f(%q: tensor<4x2x8xf32>, %k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %m: tensor<3x2x16xf32>, %o: tensor<4x2x8xf32>) {
  // expected-error @+1 {{'kvcache.attention' op mask rows (3) must divide the query heads (4)}}
  %0 = kvcache.attention ins(%q, %k, %v : tensor<4x2x8xf32>, tensor<2x16x8xf32>, tensor<2x16x8xf32>) mask(%m : tensor<3x2x16xf32>) outs(%o : tensor<4x2x8xf32>)
  return
}

// -----

func.func @f(%q: tensor<4x2x8xf32>, %k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %m: tensor<2x3x16xi1>, %o: tensor<4x2x8xf32>) {
  // expected-error @+1 {{'kvcache.attention' op mask must have shape [2, 2, 16] [Hm, Lq or 1, S], got [2, 3, 16]}}
  %0 = kvcache.attention ins(%q, %k, %v : tensor<4x2x8xf32>, tensor<2x16x8xf32>, tensor<2x16x8xf32>) mask(%m : tensor<2x3x16xi1>) outs(%o : tensor<4x2x8xf32>)
  return
}

// -----

func.func @f(%q: tensor<4x2x8xf32>, %k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %m: tensor<1x1x15xf32>, %o: tensor<4x2x8xf32>) {
  // expected-error @+1 {{'kvcache.attention' op mask must have shape [1, 1, 16] [Hm, Lq or 1, S], got [1, 1, 15]}}
  %0 = kvcache.attention ins(%q, %k, %v : tensor<4x2x8xf32>, tensor<2x16x8xf32>, tensor<2x16x8xf32>) mask(%m : tensor<1x1x15xf32>) outs(%o : tensor<4x2x8xf32>)
  return
}

// -----

func.func @f(%q: tensor<4x2x8xf32>, %k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %m: tensor<16xf32>, %o: tensor<4x2x8xf32>) {
  // expected-error @+1 {{'kvcache.attention' op mask must have rank 3 [Hm, Lq or 1, S], got rank 1}}
  %0 = kvcache.attention ins(%q, %k, %v : tensor<4x2x8xf32>, tensor<2x16x8xf32>, tensor<2x16x8xf32>) mask(%m : tensor<16xf32>) outs(%o : tensor<4x2x8xf32>)
  return
}

// -----

func.func @f(%c: tensor<16xf32>, %a: tensor<1xf32>, %l: tensor<16xi32>) {
  // expected-error @+1 {{'kvcache.append' op cache must have rank >= 2 [H, P, ...], got rank 1}}
  %r, %n = kvcache.append %c, %a lengths(%l) : tensor<16xf32>, tensor<1xf32>, tensor<16xi32> -> tensor<17xf32>, tensor<16xi32>
  return
}

// -----

func.func @f(%c: tensor<2x16x8xf32>, %a: tensor<2x1x4xf32>, %l: tensor<2xi32>) {
  // expected-error @+1 {{'kvcache.append' op added must have shape [2, 1, 8] [H, T, ...] (as the cache but T), got [2, 1, 4]}}
  %r, %n = kvcache.append %c, %a lengths(%l) : tensor<2x16x8xf32>, tensor<2x1x4xf32>, tensor<2xi32> -> tensor<2x17x8xf32>, tensor<2xi32>
  return
}

// -----

func.func @f(%c: tensor<2x16x8xf32>, %a: tensor<2x1x8xf32>, %l: tensor<3xi32>) {
  // expected-error @+1 {{'kvcache.append' op lengths must have shape [2] [H], got [3]}}
  %r, %n = kvcache.append %c, %a lengths(%l) : tensor<2x16x8xf32>, tensor<2x1x8xf32>, tensor<3xi32> -> tensor<2x17x8xf32>, tensor<3xi32>
  return
}

// -----

func.func @f(%c: tensor<2x16x8xf32>, %a: tensor<2x2x8xf32>, %l: tensor<2xi32>) {
  // expected-error @+1 {{'kvcache.append' op result must have shape [2, 18, 8] [H, P + T, ...], got [2, 17, 8]}}
  %r, %n = kvcache.append %c, %a lengths(%l) : tensor<2x16x8xf32>, tensor<2x2x8xf32>, tensor<2xi32> -> tensor<2x17x8xf32>, tensor<2xi32>
  return
}

// -----

func.func @f(%c: tensor<2x16x8xf32>, %a: tensor<2x2x8xf16>, %l: tensor<2xi32>) {
  // expected-error @+1 {{'kvcache.append' op failed to verify that all of {cache, added, result} have same element type}}
  %r, %n = kvcache.append %c, %a lengths(%l) : tensor<2x16x8xf32>, tensor<2x2x8xf16>, tensor<2xi32> -> tensor<2x18x8xf32>, tensor<2xi32>
  return
}

// -----

func.func @heavy_too_many(%k: tensor<2x32x4xf32>, %v: tensor<2x32x4xf32>, %a: tensor<2x32xf32>) {
  // expected-error @+1 {{'heavy' (4) needs 2 * heavy + 1 <= the 8 middle slots of a budget of 16 slots (at most 3)}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, slots = 16, heavy = 4>}
      : tensor<2x32x4xf32>, tensor<2x32x4xf32>, tensor<2x32xf32>
      -> tensor<2x16x4xf32>, tensor<2x16x4xf32>, tensor<2x16xi32>, tensor<2x16xi32>, tensor<2x16xf32>, tensor<2xi32>
  return
}

// -----

func.func @heavy_not_h2o(%k: tensor<2x32x4xf32>, %v: tensor<2x32x4xf32>, %a: tensor<2x32xf32>) {
  // expected-error @+1 {{'heavy' (heavy hitters kept out of merging) is a kvmerger parameter; policy 'h2o' does not take it}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<h2o, slots = 16, heavy = 1>}
      : tensor<2x32x4xf32>, tensor<2x32x4xf32>, tensor<2x32xf32>
      -> tensor<2x16x4xf32>, tensor<2x16x4xf32>, tensor<2x16xi32>, tensor<2x16xi32>, tensor<2x16xf32>, tensor<2xi32>
  return
}

// -----

func.func @merge_sets_heavy_needs_scores(%s: tensor<2x31xf32>) {
  // expected-error @+1 {{'heavy' (2) needs the scores operand to find the heavy hitters}}
  %slot, %len = kvcache.merge_sets %s sink(4) recent(4) middle(8) heavy(2) mode(budget) : tensor<2x31xf32> -> tensor<2x32xi32>, tensor<2xi32>
  return
}

// -----

func.func @merge_sets_heavy_too_many(%s: tensor<2x31xf32>, %a: tensor<2x32xf32>) {
  // expected-error @+1 {{'heavy' (4) needs 2 * heavy + 1 <= middle (8)}}
  %slot, %len = kvcache.merge_sets %s scores(%a : tensor<2x32xf32>) sink(4) recent(4) middle(8) heavy(4) mode(budget) : tensor<2x31xf32> -> tensor<2x32xi32>, tensor<2xi32>
  return
}
