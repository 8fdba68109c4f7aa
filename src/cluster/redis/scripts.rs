//! The Lua scripts that make a session's changes atomic in Redis. A script runs alone:
//! reading the seat, assigning the version, writing the state, appending to the session's
//! stream and publishing happen as one step, so every instance sees one order.
//!
//! Every published message is one JSON envelope (see `envelope.rs`); a commit's carries
//! `v` (its version), `after` (the version it follows, so a receiver detects a gap) and
//! `epoch` (a new one whenever the session's keys were created afresh).
//!
//! **Reconciliation rule** (a session changed on an instance while Redis was out of reach,
//! `reconcile = 1`): the state with the higher version wins, Redis's on a tie; either way
//! it is published again with a version above both, so every instance, and every member
//! that saw either history, moves forward to the same state.
//!
//! **Activation rule** (a scheduled change reaching its instant, which every instance
//! holding the session live proposes): the state hash keeps the pending change's id
//! (`scheduled`, `''` when none) from every commit; an activation names the id it applies
//! and commits only while that id is still pending and the session is still at the
//! proposer's version. So exactly one activation commits; the others (and a stale one,
//! proposed again from the newer state that refused it) come back refused.

use redis::Script;
use std::sync::LazyLock;

/// KEYS: state hash, stream, lease, channel.
/// ARGV: 1 record JSON, 2 check (`any`, `is`, `lapsed`), 3 the check's client (`''`: none),
/// 4 the proposer's version, 5 key TTL ms, 6 stream length, 7 origin instance, 8 ticket,
/// 9 kind (`change`, `reconcile`, `seed`), 10 lease ms, 11 the new leader (`''`: none),
/// 12 a fresh epoch, 13 the record's pending change id (`''`: none), 14 the change id this
/// proposal activates (`''`: not an activation).
/// Returns `{1, envelope}` when committed, `{0, current record or ''}` when the check
/// failed, an activation was refused, or a seed found the session already there.
pub static COMMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local state, log, lease, channel = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local cur_leader = redis.call('HGET', state, 'leader') or ''
local cur_version = tonumber(redis.call('HGET', state, 'version') or '0')
local check, holder = ARGV[2], ARGV[3]
if (check == 'is' and cur_leader ~= holder)
  or (check == 'lapsed' and (cur_leader ~= holder or redis.call('EXISTS', lease) == 1)) then
  return {0, redis.call('HGET', state, 'record') or ''}
end
local base = tonumber(ARGV[4])
local scheduled = ARGV[13]
if ARGV[14] ~= '' and ((redis.call('HGET', state, 'scheduled') or '') ~= ARGV[14]
  or cur_version ~= base) then
  return {0, redis.call('HGET', state, 'record') or ''}
end
local record, leader = ARGV[1], ARGV[11]
local ttl = tonumber(ARGV[5])
if ARGV[9] == 'seed' then
  if cur_version > 0 then
    return {0, ''}
  end
  redis.call('HSET', state, 'version', base, 'record', record, 'leader', leader, 'epoch', ARGV[12],
    'scheduled', scheduled)
  redis.call('PEXPIRE', state, ttl)
  if leader ~= '' then
    redis.call('SET', lease, leader, 'PX', ARGV[10])
  end
  return {0, ''}
end
if ARGV[9] == 'reconcile' and cur_version >= base and cur_version > 0 then
  record = redis.call('HGET', state, 'record') or record
  leader = cur_leader
  scheduled = redis.call('HGET', state, 'scheduled') or ''
end
local version = math.max(base, cur_version) + 1
local epoch = redis.call('HGET', state, 'epoch')
if not epoch then
  epoch = ARGV[12]
end
redis.call('HSET', state, 'version', version, 'record', record, 'leader', leader, 'epoch', epoch,
  'scheduled', scheduled)
redis.call('PEXPIRE', state, ttl)
if leader == '' then
  redis.call('DEL', lease)
elseif leader ~= cur_leader then
  redis.call('SET', lease, leader, 'PX', ARGV[10])
end
local envelope = '{"kind":"commit","v":' .. version .. ',"after":' .. cur_version
  .. ',"epoch":"' .. epoch .. '","origin":"' .. ARGV[7] .. '","ticket":' .. ARGV[8]
  .. ',"record":' .. record .. '}'
local id = version .. '-0'
local ok = redis.pcall('XADD', log, 'MAXLEN', '~', ARGV[6], id, 'e', envelope)
if type(ok) == 'table' and ok.err then
  -- An older stream with higher ids (the hash expired before it): start it again.
  redis.call('DEL', log)
  redis.call('XADD', log, 'MAXLEN', '~', ARGV[6], id, 'e', envelope)
end
redis.call('PEXPIRE', log, ttl)
redis.call('PUBLISH', channel, envelope)
return {1, envelope}
"#,
    )
});

/// KEYS: state hash, presence hash, resume key (or a placeholder), channel, stream.
/// ARGV: 1 claim the resume key (`1`/`0`), 2 this instance.
/// Returns `{record or '', version, epoch or '', grant or '', presence field/value list,
/// the stream's entries}` (the entries let a resume here replay what it missed).
/// A claimed grant is deleted (one resume per token) and announced on the channel, so an
/// instance still holding that identity lets it go.
pub static LOAD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local state, presence, resume, channel, log = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local record = redis.call('HGET', state, 'record') or ''
local version = redis.call('HGET', state, 'version') or '0'
local epoch = redis.call('HGET', state, 'epoch') or ''
local grant = ''
if ARGV[1] == '1' then
  grant = redis.call('GET', resume) or ''
  if grant ~= '' then
    redis.call('DEL', resume)
    local claimed = cjson.decode(grant)
    redis.call('PUBLISH', channel, cjson.encode({kind = 'claimed', clientId = claimed.clientId, instance = ARGV[2]}))
  end
end
return {record, version, epoch, grant, redis.call('HGETALL', presence), redis.call('XRANGE', log, '-', '+')}
"#,
    )
});
