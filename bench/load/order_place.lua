-- POST /v1/orders: one random product, a fresh Idempotency-Key per request, a random customer.
-- BENCH_FIRST_PRODUCT keeps the orders off the ids below it: make bench passes the warm read's
-- hot range + 1, so that no order invalidates a product the warm read keeps cached.
local common = require "common"
local tokens, first, products

function init(args)
  common.seed()
  tokens = common.lines("BENCH_TOKENS")
  first = common.number("BENCH_FIRST_PRODUCT", 1)
  products = common.number("BENCH_PRODUCTS", 1000)
end

function request()
  local body = '{"items":[{"product_id":' .. math.random(first, products) .. ',"quantity":1}]}'
  return wrk.format("POST", "/v1/orders", {
    ["Authorization"] = "Bearer " .. common.pick(tokens),
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = common.random_hex(32),
  }, body)
end

done = common.done
