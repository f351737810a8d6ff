"""The Lua scripts of ``RedisCoordinationStore`` (each operation is one atomic script).

Conventions shared by every script: ``KEYS[1]`` is the key the operation is about; when the
key belongs to a run, the last KEYS entry is the run's index set (``{prefix}:runkeys:{run_id}``)
and the script adds the touched keys to it. A key indexed after ``expire_run`` inherits the
index's remaining TTL (late writes of a finished run expire with it). TTLs are milliseconds;
0 means none.
"""

from __future__ import annotations

__all__ = ["ACQUIRE", "COMPARE_AND_SET", "EXPIRE_RUN", "RELEASE", "SET_ADD"]

_INDEX = """
local function index(idx, key)
  redis.call('SADD', idx, key)
  local ttl = redis.call('PTTL', idx)
  if ttl > 0 and redis.call('PTTL', key) == -1 then
    redis.call('PEXPIRE', key, ttl)
  end
end
"""

#: KEYS: set [, index]. ARGV: member, ttl_ms. Returns 1 if added, else 0.
SET_ADD = (
    _INDEX
    + """
local added = redis.call('SADD', KEYS[1], ARGV[1])
if tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if KEYS[2] then index(KEYS[2], KEYS[1]) end
return added
"""
)

#: KEYS: key [, index]. ARGV: mode ('absent' | 'equals'), expected, value, ttl_ms.
#: Returns 1 if set, else 0.
COMPARE_AND_SET = (
    _INDEX
    + """
local current = redis.call('GET', KEYS[1])
if ARGV[1] == 'absent' then
  if current then return 0 end
elseif current ~= ARGV[2] then
  return 0
end
if tonumber(ARGV[4]) > 0 then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
else
  redis.call('SET', KEYS[1], ARGV[3])
end
if KEYS[2] then index(KEYS[2], KEYS[1]) end
return 1
"""
)

#: KEYS: lock, fence counter [, index]. ARGV: ttl_ms. Returns the token, or nil if held.
ACQUIRE = (
    _INDEX
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token, 'PX', ARGV[1])
if KEYS[3] then
  index(KEYS[3], KEYS[1])
  index(KEYS[3], KEYS[2])
end
return token
"""
)

#: KEYS: lock. ARGV: token. Returns 1 if released, else 0.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

#: KEYS: index. ARGV: ttl_ms. Caps the TTL of every indexed key (a shorter TTL, e.g. a held
#: lock's, is kept) and of the index; returns how many keys got the TTL.
#: The empty member keeps the index alive (with its TTL) for late writes of the run.
EXPIRE_RUN = """
local keys = redis.call('SMEMBERS', KEYS[1])
local count = 0
for _, key in ipairs(keys) do
  local current = redis.call('PTTL', key)
  if key ~= '' and (current == -1 or current > tonumber(ARGV[1])) then
    redis.call('PEXPIRE', key, ARGV[1])
    count = count + 1
  end
end
redis.call('SADD', KEYS[1], '')
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return count
"""
