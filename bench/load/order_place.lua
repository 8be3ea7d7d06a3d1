-- POST /v1/orders: one random product, a fresh Idempotency-Key per request, a random customer.
local common = require "common"
local tokens, products

function init(args)
  common.seed()
  tokens = common.lines("BENCH_TOKENS")
  products = common.number("BENCH_PRODUCTS", 1000)
end

function request()
  local body = '{"items":[{"product_id":' .. math.random(1, products) .. ',"quantity":1}]}'
  return wrk.format("POST", "/v1/orders", {
    ["Authorization"] = "Bearer " .. common.pick(tokens),
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = common.random_hex(32),
  }, body)
end

done = common.done
