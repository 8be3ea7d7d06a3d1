-- GET /v1/products/{id} anonymously, each request from a random one of BENCH_CLIENTS client
-- addresses (X-Forwarded-For, the server trusting the loopback proxy): the rate limiter's
-- worst case, a key with too few requests in one process to reuse a lease.
local common = require "common"
local products, clients

function init(args)
  common.seed()
  products = common.number("BENCH_PRODUCTS", 1000)
  clients = common.number("BENCH_CLIENTS", 1000000)
end

function request()
  local n = math.random(0, clients - 1)
  -- wrk's LuaJIT has no bitwise operators
  local address = string.format("10.%d.%d.%d", math.floor(n / 65536) % 256,
    math.floor(n / 256) % 256, n % 256)
  return wrk.format("GET", "/v1/products/" .. math.random(1, products),
    { ["X-Forwarded-For"] = address })
end

done = common.done
