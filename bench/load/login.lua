-- POST /v1/auth/login with a random bench account (lines "email<TAB>password"): argon2-bound.
local common = require "common"
local bodies = {}

function init(args)
  common.seed()
  for _, line in ipairs(common.lines("BENCH_LOGINS")) do
    local email, password = line:match("^([^\t]+)\t(.+)$")
    bodies[#bodies + 1] = '{"email":"' .. email .. '","password":"' .. password .. '"}'
  end
end

function request()
  return wrk.format("POST", "/v1/auth/login", { ["Content-Type"] = "application/json" },
    common.pick(bodies))
end

done = common.done
