-- 90% reads / 10% writes: 80% product by id, 10% the first list page, 10% an order.
local common = require "common"
local tokens, products

function init(args)
  common.seed()
  tokens = common.lines("BENCH_TOKENS")
  products = common.number("BENCH_PRODUCTS", 1000)
end

function request()
  local roll = math.random(1, 100)
  local auth = "Bearer " .. common.pick(tokens)
  if roll <= 80 then
    return wrk.format("GET", "/v1/products/" .. math.random(1, products),
      { ["Authorization"] = auth })
  elseif roll <= 90 then
    return wrk.format("GET", "/v1/products?limit=20")
  end
  local body = '{"items":[{"product_id":' .. math.random(1, products) .. ',"quantity":1}]}'
  return wrk.format("POST", "/v1/orders", {
    ["Authorization"] = auth,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = common.random_hex(32),
  }, body)
end

done = common.done
