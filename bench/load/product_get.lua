-- GET /v1/products/{id}: a random id of BENCH_PRODUCTS, a random credential of BENCH_TOKENS
-- (access tokens, or hp_ API keys: both go as a Bearer). The ceilings ignore the header.
local common = require "common"
local tokens, products

function init(args)
  common.seed()
  tokens = common.lines("BENCH_TOKENS")
  products = common.number("BENCH_PRODUCTS", 1000)
end

function request()
  return wrk.format("GET", "/v1/products/" .. math.random(1, products),
    { ["Authorization"] = "Bearer " .. common.pick(tokens) })
end

done = common.done
