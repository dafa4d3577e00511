/**
 * Exchange Online's replies as real users met them: each `reply` is the text a user pasted in a public
 * thread (or Microsoft quoted on a Learn page or in its docs repository), with the page it was found on.
 * Nobody on the team wrote these texts. The catalogue test (test/unit/catalogue.test.ts) runs every
 * entry through the catalogue; the sandbox (exchange-replies.ts) speaks the newest wording of each.
 *
 * It lives under src/sandbox rather than test/fixtures because the sandbox ships in dist/ (serve
 * --sandbox) and reads it at run time; production code never imports it.
 *
 * Rules: a text is copied, never composed. Where a paste lost the basic code (a library printed only
 * the text), `code` gives the basic code the same source shows (title, exception tuple, or the named
 * status of the library), and `note` says which. Long `[BeginDiagnosticData]` hex tails are cut after
 * `Cannot submit message.` and `note` says so; nothing else is changed. Addresses are as pasted.
 */

/** One recorded Exchange reply. */
export interface RecordedReply {
  /** The reply as pasted: `<code> <enhanced> <text>`, or `<enhanced> <text>` when `code` is given. */
  readonly reply: string;
  /** The basic code when the paste lacks it (see `note`). */
  readonly code?: number;
  /** Where it was found: a Microsoft Learn page or a public issue thread. */
  readonly source: string;
  /** The catalogue row and class it must get. */
  readonly row: string;
  readonly class: 'sent' | 'transient' | 'throttled' | 'auth' | 'permanent' | 'blocked';
  readonly note?: string;
}

/** SMTP refusals recorded from public sources (58), and replies quoted in Exchange Online NDRs. */
export const RECORDED_SMTP_REPLIES: readonly RecordedReply[] = [
  // 432 4.3.2: more than 3 connections for one mailbox.
  {
    reply:
      '432 4.3.2 Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending for more information. [Hostname=OS0PR01MB6099.jpnprd01.prod.outlook.com]',
    source: 'https://github.com/sabuhish/fastapi-mail/issues/75',
    row: 'smtp-432-4.3.2-concurrent',
    class: 'throttled',
  },
  {
    reply: '432 4.3.2 Concurrent connections limit exceeded.',
    source: 'https://github.com/nodemailer/nodemailer/issues/1613',
    row: 'smtp-432-4.3.2-concurrent',
    class: 'throttled',
  },
  {
    reply: '432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded [Hostname=DM5SPR00MB2471.namprd08.prod.outlook.com]',
    source: 'https://github.com/timeoff-management/timeoff-management-application/issues/308',
    row: 'smtp-432-4.3.2-threads',
    class: 'throttled',
  },
  {
    reply: '432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded [Hostname=SG2PR01MB3659.apcprd01.prod.exchangelabs.com]',
    source: 'https://github.com/v2board/v2board/issues/148',
    row: 'smtp-432-4.3.2-threads',
    class: 'throttled',
  },
  // 554 5.2.0 SubmissionQuotaExceeded: the daily recipient limit only.
  {
    reply: '554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException',
    source: 'https://github.com/MicrosoftDocs/OfficeDocs-Support/issues/1150',
    row: 'smtp-554-5.2.0-quota',
    class: 'throttled',
    note: 'quoted from MS Learn smtp-submission-improvements; the thread got the page corrected: only the recipients-per-day limit gives it (PR MicrosoftDocs/OfficeDocs-Support#1488)',
  },
  // 535 5.7.139: SMTP AUTH off for the tenant.
  {
    reply:
      '535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information. [MN2PR05CA0004.namprd05.prod.outlook.com 2023-09-12T20:59:57.214Z 08DBB276B7E699C4]',
    source: 'https://github.com/simonrob/email-oauth2-proxy/issues/193',
    row: 'smtp-535-5.7.139-tenant',
    class: 'auth',
  },
  {
    reply:
      '535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information. [TY1PR01CA0183.jpnprd01.prod.outlook.com]',
    source: 'https://github.com/nodemailer/nodemailer/issues/1484',
    row: 'smtp-535-5.7.139-tenant',
    class: 'auth',
  },
  {
    reply:
      '535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.',
    source: 'https://github.com/MicrosoftDocs/OfficeDocs-Exchange/issues/3124',
    row: 'smtp-535-5.7.139-tenant',
    class: 'auth',
  },
  // 535 5.7.139: a password where only OAuth is taken.
  {
    reply: '535 5.7.139 Authentication unsuccessful, basic authentication is disabled. [BM1P287CA0015.INDP287.PROD.OUTLOOK.COM]',
    source: 'https://github.com/rpremraj/mailR/issues/107',
    row: 'smtp-535-5.7.139-basic',
    class: 'auth',
  },
  {
    reply:
      '535 5.7.139 Authentication unsuccessful, basic authentication is disabled. [PN0PR01CA0024.INDPRD01.PROD.OUTLOOK.COM 2025-01-26T18:54:30.055Z 08DD3DD7D75D7743]',
    source: 'https://github.com/nodemailer/nodemailer/issues/1714',
    row: 'smtp-535-5.7.139-basic',
    class: 'auth',
  },
  {
    reply: '535 5.7.139 Authentication unsuccessful, basic authentication is disabled.',
    source: 'https://github.com/lukevella/rallly/issues/3154',
    row: 'smtp-535-5.7.139-basic',
    class: 'auth',
  },
  {
    reply: '5.7.139 Authentication unsuccessful, the user credentials were incorrect. [PH0PR07CA0004.namprd07.prod.outlook.com]',
    code: 535,
    source: 'https://github.com/codassassin/email-bomber-v2.0/issues/1',
    row: 'smtp-535-5.7.139-credentials',
    class: 'auth',
    note: "smtplib's (535, b'5.7.139 ...') tuple",
  },
  {
    reply: '535 5.7.139 Authentication unsuccessful, the user credentials were incorrect.',
    source: 'https://github.com/freescout-help-desk/freescout/issues/4930',
    row: 'smtp-535-5.7.139-credentials',
    class: 'auth',
  },
  // 535 5.7.3: the token (or password) refused.
  {
    reply: '535 5.7.3 Authentication unsuccessful [SGXP274CA0016.SGPP274.PROD.OUTLOOK.COM 2025-03-20T11:25:21.972Z 08DD66EDEFB0DFDF]',
    source: 'https://github.com/HChaoHui/msOauth2api/issues/3',
    row: 'smtp-535-5.7.3',
    class: 'auth',
  },
  {
    reply: '5.7.3 Authentication unsuccessful [AM0PR06CA0126.eurprd06.prod.outlook.com 2024-02-14T14:50:26.590Z 08DC2D372B4C3DED]',
    code: 535,
    source: 'https://github.com/jstedfast/MailKit/issues/1712',
    row: 'smtp-535-5.7.3',
    class: 'auth',
    note: 'MailKit prints "535: 5.7.3 ..."',
  },
  {
    reply: '535 5.7.3 Authentication unsuccessful [FR3P281CA0094.DEUP281.PROD.OUTLOOK.COM]',
    source: 'https://github.com/tarickb/sasl-xoauth2/issues/43',
    row: 'smtp-535-5.7.3',
    class: 'auth',
  },
  {
    reply: '535 5.7.3 Authentication unsuccessful [HKAPR04CA0016.apcprd04.prod.outlook.com]',
    source: 'https://github.com/Youans/nodejs-nodemailer-outlook/issues/13',
    row: 'smtp-535-5.7.3',
    class: 'auth',
  },
  {
    reply: '5.7.3 Authentication unsuccessful [VI1PR0802CA0045.eurprd08.prod.outlook.com]',
    code: 535,
    source: 'https://github.com/BitBotFactory/MikaLendingBot/issues/622',
    row: 'smtp-535-5.7.3',
    class: 'auth',
    note: "smtplib's (535, '5.7.3 ...') tuple",
  },
  {
    reply: '5.7.3 Authentication unsuccessful [BN3PR03CA0067.namprd03.prod.outlook.com]',
    code: 535,
    source: 'https://github.com/jstedfast/MailKit/issues/700',
    row: 'smtp-535-5.7.3',
    class: 'auth',
    note: 'the issue title gives "535 5.7.3 Authentication unsuccessful"',
  },
  {
    reply: '535 5.7.3 Authentication unsuccessful',
    source: 'https://github.com/PHPMailer/PHPMailer/issues/992',
    row: 'smtp-535-5.7.3',
    class: 'auth',
  },
  // 530 5.7.57: MAIL FROM without AUTH.
  {
    reply: '530 5.7.57 Client not authenticated to send mail. [FR5P281CA0041.DEUP281.PROD.OUTLOOK.COM 2024-10-09T10:39:31.988Z 08DCE8162EC4E3C0]',
    source: 'https://github.com/simonrob/email-oauth2-proxy/issues/295',
    row: 'smtp-530-5.7.57',
    class: 'auth',
  },
  {
    reply: '530 5.7.57 Client not authenticated to send mail',
    source: 'https://github.com/simonrob/email-oauth2-proxy/issues/315',
    row: 'smtp-530-5.7.57',
    class: 'auth',
  },
  // 504 5.7.4: a mechanism not offered (here by the 21Vianet cloud).
  {
    reply: '504 5.7.4 Unrecognized authentication type [BJXPR01CA011.CHNPR01.prod.partner.outlook.cn]',
    source: 'https://github.com/u-ichi/fluent-plugin-mail/issues/44',
    row: 'smtp-504-5.7.4',
    class: 'auth',
  },
  // SendAs: today's 5.2.252 wording, and the older 5.2.0 one.
  {
    reply:
      '554 5.2.252 SendAsDenied; delightgx46@outlook.com not allowed to send as security@sfb.com; STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to process message due to a permanent exception with message [BeginDiagnosticData]Cannot submit message.',
    source: 'https://github.com/gophish/gophish/issues/2900',
    row: 'smtp-554-5.2.252-sendas',
    class: 'permanent',
    note: 'diagnostic hex after "Cannot submit message." cut',
  },
  {
    reply:
      '554 5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to process message due to a permanent exception with message Cannot submit message.',
    source: 'https://github.com/MicrosoftDocs/OfficeDocs-Support/issues/1187',
    row: 'smtp-554-5.2.0-sendas',
    class: 'permanent',
  },
  {
    reply:
      '5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to process message due to a permanent exception with message Cannot submit message. 0.35250:7D060000, 1.36674:0A000000, 1.61250:00000000',
    code: 554,
    source: 'https://github.com/rss2email/rss2email/issues/147',
    row: 'smtp-554-5.2.0-sendas',
    class: 'permanent',
    note: "smtplib's (554, b'5.2.0 ...') tuple; diagnostic hex cut after three groups",
  },
  {
    reply:
      '554 5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to process message due to a permanent exception with message Cannot submit message. 0.35250:0A002085, 1.36674:0A000000, 1.61250:00000000',
    source: 'https://github.com/zammad/zammad-admin-documentation/issues/85',
    row: 'smtp-554-5.2.0-sendas',
    class: 'permanent',
    note: 'diagnostic hex cut after three groups',
  },
  {
    reply: '550 5.7.60 SMTP; Client does not have permissions to send as this sender',
    source: 'https://github.com/gophish/gophish/issues/1600',
    row: 'smtp-550-5.7.60',
    class: 'permanent',
  },
  {
    reply: '550 5.7.60 SMTP; Client does not have permissions to send as this sender [BY2PR1001MB1094.namprd10.prod.outlook.com]',
    source: 'https://pastebin.com/wtU9XT6T',
    row: 'smtp-550-5.7.60',
    class: 'permanent',
    note: "an SMTP connector log (2018): its '+' for spaces decoded",
  },
  // 550 5.1.8: the mailbox restricted for spam.
  {
    reply: '550 5.1.8 Access denied, bad outbound sender',
    source: 'https://github.com/MicrosoftDocs/OfficeDocs-o365seccomp/issues/643',
    row: 'smtp-550-5.1.8',
    class: 'blocked',
    note: "quoted from the NDR: Remote Server returned '550 5.1.8 Access denied, bad outbound sender'",
  },
  // Old TLS.
  {
    reply:
      '421 4.7.66 TLS 1.0 and 1.1 are not supported. Please upgrade/update your client to support TLS 1.2. Visit https://aka.ms/smtp_auth_tls. [SA9P221CA0019.NAMP221.PROD.OUTLOOK.COM]',
    source: 'https://github.com/zehm/sendEmail/issues/1',
    row: 'smtp-421-4.7.66',
    class: 'permanent',
  },
  // Temporary server errors.
  {
    reply: '4.7.0 Temporary server error. Please try again later. PRX4 [AM5PR0701CA0008.eurprd07.prod.outlook.com]',
    code: 451,
    source: 'https://github.com/jstedfast/MailKit/issues/566',
    row: 'smtp-451-4.7.0-temporary',
    class: 'transient',
    note: "MailKit's ErrorInProcessing status, which is 451",
  },
  {
    reply: '4.3.111 Temporary server error. Please try again later MRH1 [Hostname=GVXP192MB1782.EURP192.PROD.OUTLOOK.COM]',
    code: 451,
    source: 'https://github.com/datalust/seq-app-htmlemail/issues/101',
    row: 'smtp-451-4.3.111-temporary',
    class: 'transient',
    note: "System.Net.Mail's 'Error in processing', status 451",
  },
  {
    reply: '4.7.500 Server busy. Please try again later from [IP]. (S77719)',
    code: 451,
    source: 'https://github.com/MicrosoftDocs/OfficeDocs-Exchange/issues/2499',
    row: 'smtp-451-4.7.500',
    class: 'transient',
    note: 'the Learn page it comments on is "error code 451 4.7.500-699"',
  },
  // Size.
  {
    reply: '552 5.3.4 Header size exceeds fixed maximum size',
    source: 'https://github.com/jstedfast/MailKit/issues/904',
    row: 'smtp-552-5.3.4-header',
    class: 'permanent',
  },
  // STARTTLS was not done before MAIL (a proxy stripped it, or the client skipped it).
  {
    reply: '451 5.7.3 STARTTLS is required to send mail [SG2PR02CA0073.apcprd02.prod.outlook.com 2024-07-24T03:43:18.298Z 08DCAB6EB788477A]',
    source: 'https://github.com/apache/hertzbeat/issues/2365',
    row: 'smtp-451-5.7.3-starttls',
    class: 'blocked',
  },
  {
    reply: '451 5.7.3 STARTTLS is required to send mail [SG2PR04CA0205.apcprd04.prod.outlook.com]',
    source: 'https://github.com/noobcfy/wikis/issues/3',
    row: 'smtp-451-5.7.3-starttls',
    class: 'blocked',
  },
  {
    reply: '5.7.3 STARTTLS is required to send mail [SYBPR01CA0209.ausprd01.prod.outlook.com \n2023-07-10T05:11:31.967Z 08DB7C994F8AAD26]',
    code: 451,
    source: 'https://github.com/VeeamHub/powershell/issues/190',
    row: 'smtp-451-5.7.3-starttls',
    class: 'blocked',
    note: "Send-MailMessage's 'Error in processing' (System.Net.Mail's status 451); the line break as pasted",
  },
  // The older 5.7.57 wording, and one more 5.7.3.
  {
    reply: '530 5.7.57 SMTP; Client was not authenticated to send anonymous mail during MAIL FROM [DM5PR21CA0024.namprd21.prod.outlook.com]',
    source: 'https://github.com/glowroot/glowroot/issues/226',
    row: 'smtp-530-5.7.57',
    class: 'auth',
    note: 'the 2017 wording',
  },
  {
    reply: '5.7.3 Authentication unsuccessful [AM6P195CA0081.EURP195.PROD.OUTLOOK.COM]',
    code: 535,
    source: 'https://github.com/mageplaza/magento-2-smtp/issues/146',
    row: 'smtp-535-5.7.3',
    class: 'auth',
    note: 'the module printed the text only; 535 is the code the other 5.7.3 pastes show',
  },
  // The mailbox is restricted for sending spam: outbound spam at submission, spam abuse in the NDR.
  {
    reply: '554 5.2.0 STOREDRV.Submission.Exception:OutboundSpamException;',
    source: 'https://github.com/nodemailer/nodemailer/issues/1486',
    row: 'smtp-554-5.2.0-outbound-spam',
    class: 'blocked',
    note: 'smtp.office365.com:587 with a password; the author had unblocked the account and it sent again "after some time"',
  },
  {
    reply: "550 5.7.501 Access denied, spam abuse detected. For more information please go to http://go.microsoft.com/fwlink/?LinkId=526653",
    source: 'https://github.com/dougperkes/Visual-Graph-Explorer/issues/1',
    row: 'smtp-550-5.7.501',
    class: 'blocked',
    note: "quoted from the NDR: Remote Server returned '...'",
  },
  {
    reply:
      '550 5.7.501 Service unavailable. Spam abuse detected from IP range. For more information please go to http://go.microsoft.com/fwlink/?LinkId=526653. S(2017052602) [DM6PR11MB2729.namprd11.prod.outlook.com]',
    source: 'https://github.com/MicrosoftDocs/bot-docs/issues/1618',
    row: 'smtp-550-5.7.501',
    class: 'blocked',
    note: "quoted from the NDR: Remote Server returned '...'",
  },
  // The tenant's outbound mail is blocked (a trial tenant's low-reputation IP pool).
  {
    reply:
      '550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP. For more information please go to http://go.microsoft.com/fwlink/?LinkId=526653 AS(7230) [BM1PR01MB1076.INDPRD01.PROD.OUTLOOK.COM]',
    source: 'https://github.com/motze92/office365-mail/issues/11',
    row: 'smtp-550-5.7.708',
    class: 'blocked',
    note: "quoted from the NDR: Remote Server returned '...'",
  },
  // A recipient's mailbox is full (delivery, not the sender's Sent Items).
  {
    reply:
      '554 5.2.2 mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException.MapiExceptionShutoffQuotaExceeded; Failed to process message due to a permanent exception with message The process failed to get the correct properties.',
    source: 'https://github.com/awslabs/ecs-nginx-reverse-proxy/issues/3',
    row: 'smtp-554-5.2.2-recipient-full',
    class: 'permanent',
    note: "quoted from an NDR of BN8NAM11HT004.mail.protection.outlook.com (Remote Server returned '...'); diagnostic hex after \"correct properties.\" cut",
  },
  // An internal recipient that does not exist.
  {
    reply: '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup',
    source: 'https://github.com/gregkh/usbutils/issues/145',
    row: 'smtp-550-5.1.10',
    class: 'permanent',
    note: "the reply an exim callout got, quoted in its bounce as '550-550 5.1.10 ... by SMTP 550 address lookup': the continuation prefixes the bounce added are left out",
  },
  // Continuous error throttling: Exchange blocks SMTP AUTH for the mailbox for a while (Learn lists the five texts).
  {
    reply: '550 5.2.251 Sender throttled due to continuous mailbox full errors.',
    source: 'https://learn.microsoft.com/exchange/mail-flow-best-practices/continuous-error-throttling-smtp-auth-submissions',
    row: 'smtp-550-5.2.251-throttled',
    class: 'blocked',
    note: 'as Microsoft Learn lists it; a reply in a session ends with [HOST TIMESTAMP ID] too',
  },
  {
    reply: '550 5.2.252 Sender throttled due to continuous send as denied errors.',
    source: 'https://learn.microsoft.com/exchange/mail-flow-best-practices/continuous-error-throttling-smtp-auth-submissions',
    row: 'smtp-550-5.2.252-throttled',
    class: 'blocked',
    note: 'as Microsoft Learn lists it; a reply in a session ends with [HOST TIMESTAMP ID] too',
  },
  {
    reply: '550 5.2.253 Sender throttled due to continuous invalid license errors.',
    source: 'https://learn.microsoft.com/exchange/mail-flow-best-practices/continuous-error-throttling-smtp-auth-submissions',
    row: 'smtp-550-5.2.253-throttled',
    class: 'blocked',
    note: 'as Microsoft Learn lists it; a reply in a session ends with [HOST TIMESTAMP ID] too',
  },
  {
    reply: '550 5.2.254 Sender throttled due to continuous too many recipients errors.',
    source: 'https://learn.microsoft.com/exchange/mail-flow-best-practices/continuous-error-throttling-smtp-auth-submissions',
    row: 'smtp-550-5.2.254-throttled',
    class: 'blocked',
    note: 'as Microsoft Learn lists it; a reply in a session ends with [HOST TIMESTAMP ID] too',
  },
  {
    reply: '550 5.2.255 Sender throttled due to continuous invalid recipients errors.',
    source: 'https://learn.microsoft.com/exchange/mail-flow-best-practices/continuous-error-throttling-smtp-auth-submissions',
    row: 'smtp-550-5.2.255-throttled',
    class: 'blocked',
    note: 'as Microsoft Learn lists it; a reply in a session ends with [HOST TIMESTAMP ID] too',
  },
  // The outbound spam policy does not allow external forwarding.
  {
    reply:
      '550 5.7.520 Access denied, Your organization does not allow external forwarding. Please contact your administrator for further assistance. AS(7555)',
    source: 'https://github.com/MicrosoftDocs/microsoft-365-docs/issues/3648',
    row: 'smtp-550-5.7.520',
    class: 'permanent',
    note: "quoted from the NDR: Remote Server returned '...'",
  },
  {
    reply:
      '550 5.7.520 Access denied, Your organization does not allow external forwarding. Please contact your administrator for further assistance. AS(7555)',
    source: 'https://github.com/MicrosoftDocs/microsoft-365-docs/issues/6235',
    row: 'smtp-550-5.7.520',
    class: 'permanent',
    note: "quoted from the NDR: Remote Server returned '...'",
  },
  {
    reply:
      '550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP. For more information please go to http://go.microsoft.com/fwlink/?LinkId=526653 AS(7171) [DM6PR09MB5976.namprd09.prod.outlook.com]',
    source: 'https://github.com/microsoftgraph/microsoft-graph-docs-contrib/issues/6099',
    row: 'smtp-550-5.7.708',
    class: 'blocked',
    note: "a message forwarded through Graph; quoted from the NDR: Remote Server returned '...'",
  },
  // The daily recipient limit, as the NDR words it.
  {
    reply: "550 5.1.90 Your message can't be sent because you've reached your daily limit for message recipients",
    source: 'https://github.com/MicrosoftDocs/OfficeDocs-Exchange/issues/2729',
    row: 'smtp-550-5.1.90-daily-recipients',
    class: 'throttled',
    note: 'the NDR text the thread quotes (from a Tech Community post); a user sends again once the rolling 24 hours free',
  },
  // Microsoft's NDR table (no user paste with a citable address was found for these three).
  {
    reply: '5.7.705 Access denied, tenant has exceeded threshold',
    code: 550,
    source: 'https://learn.microsoft.com/exchange/mail-flow-best-practices/non-delivery-reports-in-exchange-online/non-delivery-reports-in-exchange-online',
    row: 'smtp-550-5.7.705',
    class: 'blocked',
    note: 'the table row "5.7.700-749"; the basic code 550 from Learn\'s 5.7.7xx page ("status code 550 5.7.7xx in a non-delivery report", quoted in MicrosoftDocs/microsoft-365-docs#986)',
  },
  {
    reply: '5.7.750 Service unavailable. Client blocked from sending from unregistered domains',
    code: 550,
    source: 'https://learn.microsoft.com/exchange/mail-flow-best-practices/non-delivery-reports-in-exchange-online/non-delivery-reports-in-exchange-online',
    row: 'smtp-550-5.7.750',
    class: 'blocked',
    note: 'the table row "5.7.750"; 550 as for 5.7.705',
  },
  {
    reply: '5.4.1 Recipient address rejected: Access denied',
    code: 550,
    source: 'https://learn.microsoft.com/exchange/mail-flow-best-practices/non-delivery-reports-in-exchange-online/non-delivery-reports-in-exchange-online',
    row: 'smtp-550-5.4.1',
    class: 'permanent',
    note: 'the table row "5.4.1" (Directory Based Edge Blocking); 550 is the basic code of its page fix-error-code-550-5-4-1',
  },
];

/** The session texts around the refusals, as users' transcripts of smtp.office365.com show them. */
export const RECORDED_SESSION = {
  /** The greeting since 2024 ends with a session id in brackets. */
  greeting: {
    line: '220 LO4P302CA0005.outlook.office365.com Microsoft ESMTP MAIL Service ready at Thu, 10 Oct 2024 22:49:55 +0000 [08DCE8B62813AB2B]',
    source: 'https://github.com/simonrob/email-oauth2-proxy/issues/297',
  },
  /** EHLO before STARTTLS (after it, `AUTH LOGIN XOAUTH2` joins and `STARTTLS` leaves). */
  ehlo: {
    lines: [
      '250-SC1PR80CA0174.outlook.office365.com Hello [xxx.xxx.xx.x]',
      '250-SIZE 157286400',
      '250-PIPELINING',
      '250-DSN',
      '250-ENHANCEDSTATUSCODES',
      '250-STARTTLS',
      '250-8BITMIME',
      '250-BINARYMIME',
      '250-CHUNKING',
      '250 SMTPUTF8',
    ],
    source: 'https://github.com/datawookie/emayili/issues/147 (the same list in https://github.com/python/cpython/issues/115251)',
  },
  startTls: { line: '220 2.0.0 SMTP server ready', source: 'https://github.com/datawookie/emayili/issues/147' },
} as const;

/** One token-endpoint error as users pasted it: the AADSTS text and where it was found. */
export interface RecordedAadstsError {
  /** The `error_description` (or the library's message) as pasted; trace and correlation ids kept where pasted. */
  readonly text: string;
  readonly source: string;
  /** The AADSTS code when the text lacks it (a Learn page's table gives the code in its own column). */
  readonly code?: string;
  /** The catalogue row and class it must get. */
  readonly row: string;
  readonly class: 'auth' | 'transient';
  readonly note?: string;
}

/** Token endpoint errors recorded from public threads and Microsoft Learn (47). */
export const RECORDED_AADSTS_ERRORS: readonly RecordedAadstsError[] = [
  {
    text: 'AADSTS7000215: Invalid client secret is provided.',
    source: 'https://github.com/microsoft/Dynamics-AX-Integration/issues/95',
    row: 'aadsts-7000215',
    class: 'auth',
  },
  {
    text: "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app 'a8fdfbd0-da97-42d9-8f1a-fd6a7cb650b4'.",
    source: 'https://github.com/OfficeDev/microsoft-365-agents-toolkit/issues/8621',
    row: 'aadsts-7000215',
    class: 'auth',
  },
  {
    text: "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '4d856d1f-8648-456c-9bb2-f36273bbe4e3'.",
    source: 'https://github.com/Azure/sap-automation/issues/418',
    row: 'aadsts-7000215',
    class: 'auth',
  },
  {
    text: 'AADSTS7000215: Invalid client secret is provided. Trace ID: 02f6f1c8-78b8-44f9-9576-66a55b4aa100 Correlation ID: 52f513ad-39d9-4eb4-b1a9-281571228968 Timestamp: 2021-09-13 23:21:24Z',
    source: 'https://github.com/microsoftgraph/contoso-airlines-teams-sample/issues/11',
    row: 'aadsts-7000215',
    class: 'auth',
  },
  {
    text: "AADSTS700016: Application with identifier '160c5842-eeba-487b-bb30-be9fae7878d0' was not found in the directory '1cdf1d7c-ca85-45c7-b1a6-0d197aa07dc5'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
    source: 'https://github.com/donwa/oneindex/issues/621',
    row: 'aadsts-700016',
    class: 'auth',
  },
  {
    text: "AADSTS700016: Application with identifier 'Enter_the_Application_Id_here' was not found in the directory 'abc '. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
    source: 'https://github.com/AzureADQuickStarts/AppModelv2-WebApp-OpenIDConnect-DotNet/issues/50',
    row: 'aadsts-700016',
    class: 'auth',
  },
  {
    text: "AADSTS700016: Application with identifier 'd1ddf0e4-d672-4dae-b554-9d5bdfd93547' was not found in the directory",
    source: 'https://github.com/svdbusse/IntuneScripts/issues/11',
    row: 'aadsts-700016',
    class: 'auth',
    note: 'the issue title, cut there by its author',
  },
  {
    text: "AADSTS65001: The user or administrator has not consented to use the application with ID 'XXXX'. Send an interactive authorization request for this user and resource.",
    source: 'https://github.com/Azure-Samples/active-directory-dotnet-native-headless/issues/10',
    row: 'aadsts-65001',
    class: 'auth',
  },
  {
    text: "AADSTS65001: The user or administrator has not consented to use the application with ID 'xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxx'. Send an interactive authorization request for this user and resource.",
    source: 'https://github.com/microsoft/mattercenter/issues/656',
    row: 'aadsts-65001',
    class: 'auth',
  },
  {
    text: "AADSTS50076: Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '00000003-0000-0000-c000-000000000000'.",
    source: 'https://github.com/AzureAD/microsoft-authentication-library-for-go/issues/398',
    row: 'aadsts-50076',
    class: 'auth',
  },
  {
    text: "AADSTS50076: Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '797f4846-ba00-4fd7-ba43-dac1f8f63013'. Trace ID: 68ea69c4-9700-46ef-991b-c398615b8300 Correlation ID: 9373f28a-8e7b-4b99-9101-054e96774b03 Timestamp: 2020-08-20 20:06:22Z",
    source: 'https://github.com/stgeorgi/wvdquickstart/issues/4',
    row: 'aadsts-50076',
    class: 'auth',
  },
  {
    text: "(invalid_grant) AADSTS50076: Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '00000003-0000-0000-c000-000000000000'.",
    source: 'https://github.com/RogerSelwyn/O365-HomeAssistant/issues/113',
    row: 'aadsts-50076',
    class: 'auth',
  },
  {
    text: 'AADSTS53003: Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.',
    source: 'https://github.com/AzureAD/microsoft-identity-web/issues/2419',
    row: 'aadsts-53003',
    class: 'auth',
  },
  {
    text: 'AADSTS53003: Access has been blocked by Conditional Access policies. The access policy does not allow token issuance. Trace ID: 2f8ccb7a-459e-44fb-b615-232475945800 Correlation ID: 824fc737-3721-428a-adb8-e51aec8c4cce Timestamp: 2026-02-17 18:39:09Z',
    source: 'https://github.com/Azure/azure-cli/issues/32809',
    row: 'aadsts-53003',
    class: 'auth',
  },
  {
    text: 'AADSTS53003: Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.',
    source: 'https://github.com/koltyakov/sp-rest-proxy/issues/96',
    row: 'aadsts-53003',
    class: 'auth',
    note: "inside a SOAP fault's psf:text",
  },
  {
    text: 'AADSTS7000222: The provided client secret keys are expired. Visit the Azure Portal to create new keys for your app, or consider using certificate credentials for added security: https://docs.microsoft.com/azure/active-directory/develop/active-directory-certificate-credentials',
    source: 'https://github.com/Azure-Samples/ms-identity-python-webapp/issues/67',
    row: 'aadsts-7000222',
    class: 'auth',
  },
  {
    text: "AADSTS7000222: The provided client secret keys for app 'd87bcc39-1750-4ca0-ad54-f8d0efbb2735' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds.",
    source: 'https://github.com/spencerwooo/onedrive-vercel-index/issues/1051',
    row: 'aadsts-7000222',
    class: 'auth',
  },
  {
    text: "AADSTS7000222: The provided client secret keys for app 'ccc25fb8-d83b-4225-b4b7-5f31bfb007be' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds. Trace ID: de577a4f-a611-44e8-94e6-5ca7955a3800 Correlation ID: b1f881fe-810c-4731-a772-fa920ee90430 Timestamp: 2025-04-10 13:07:42Z",
    source: 'https://github.com/dotnet/sign/issues/849',
    row: 'aadsts-7000222',
    class: 'auth',
  },
  {
    text: 'AADSTS700082: The refresh token has expired due to inactivity. The token was issued on 2021-02-20T02:58:17.0350262Z and was inactive for 90.00:00:00.',
    source: 'https://github.com/reruin/sharelist/issues/511',
    row: 'aadsts-700082',
    class: 'auth',
  },
  {
    text: 'AADSTS700082: The refresh token has expired due to inactivity.\nThe token was issued on 2023-04-20T18:48:41.6655773Z and was inactive for 90.00:00:00.',
    source: 'https://github.com/CompositionalIT/farmer/issues/1070',
    row: 'aadsts-700082',
    class: 'auth',
  },
  {
    text: '{"error":"invalid_grant","error_description":"AADSTS700082: The refresh token has expired due to inactivity.',
    source: 'https://github.com/blobfile/blobfile/issues/93',
    row: 'aadsts-700082',
    class: 'auth',
    note: 'the token response body, cut there by its author',
  },
  {
    text: 'AADSTS700082: The refresh token has expired due to inactivity.&nbsp;The token was issued on 2024-01-28T19:43:52.3866932Z and was inactive for 90.00:00:00.',
    source: 'https://github.com/microsoft/powerplatform-build-tools/issues/894',
    row: 'aadsts-700082',
    class: 'auth',
    note: 'the &nbsp; as the CLI printed it',
  },
  // Device code flow: the code expired before the user finished.
  {
    text: "AADSTS70020: The provided value for the input parameter 'device_code' is not valid. This device code has expired.\nTrace ID: a8f3578e-d4cb-44ac-91a8-64c1322d6f00\nCorrelation ID: ed438693-0685-4cfe-923e-b73b5cd759e5\nTimestamp: 2022-05-03 08:56:46Z",
    source: 'https://github.com/Azure/azure-cli/issues/22251',
    row: 'aadsts-70020',
    class: 'auth',
  },
  {
    text: "AADSTS70020: The provided value for the input parameter 'device_code' is not valid. This device code has expired.",
    source: 'https://github.com/MicrosoftDocs/azure-docs/issues/92366',
    row: 'aadsts-70020',
    class: 'auth',
  },
  // Client credentials with a scope that is not `<resource>/.default`.
  {
    text: 'AADSTS1002012: The provided value for scope User.Read is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).',
    source: 'https://github.com/microsoftgraph/msgraph-sdk-python/issues/181',
    row: 'aadsts-1002012',
    class: 'auth',
  },
  {
    text: 'AADSTS1002012: The provided value for scope 6a8b4b39-c021-437c-b060-5a14a3fd65f3/full_access is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).',
    source: 'https://github.com/MicrosoftDocs/azure-docs/issues/99862',
    row: 'aadsts-1002012',
    class: 'auth',
  },
  // Conditional Access sign-in frequency ended the refresh token.
  {
    text: 'AADSTS70043: The refresh token has expired or is invalid due to sign-in frequency checks by conditional access. The token was issued on 2021-11-10T02:49:07.6225734Z and the maximum allowed lifetime for this request is 3600.',
    source: 'https://github.com/KelvinTegelaar/CIPP/issues/1156',
    row: 'aadsts-70043',
    class: 'auth',
    note: 'the error_description of an interaction_required answer to a token request for Exchange',
  },
  {
    text: 'AADSTS70043: The refresh token has expired or is invalid due to sign-in frequency checks by conditional access. The token was issued on 2020-12-07T12:15:47.8520000Z and the maximum allowed lifetime for this request is 172800.\nTrace ID: 9958a6aa-3e9b-4470-9df7-7d0603262301\nCorrelation ID: c215e3d3-39fa-42e5-855c-4d93e362d308\nTimestamp: 2020-12-09 13:10:42Z',
    source: 'https://github.com/Azure/azure-cli/issues/16209',
    row: 'aadsts-70043',
    class: 'auth',
  },
  {
    text: 'AADSTS70043: The refresh token has expired or is invalid due to sign-in frequency checks by conditional access. The token was issued on 2023-06-02T14:27:05.8405153Z and the maximum allowed lifetime for this request is 86400.\\r\\nTrace ID: [redacted]\\r\\nCorrelation ID: [redacted]\\r\\nTimestamp: 2023-07-06 13:35:42Z',
    source: 'https://github.com/simonrob/email-oauth2-proxy/issues/181',
    row: 'aadsts-70043',
    class: 'auth',
    note: "Python's repr of the token response: the \\r\\n escapes as printed",
  },
  // The user's account is disabled.
  {
    text: 'AADSTS50057: The user account is disabled. Trace ID: 5f7d76c6-ec57-4833-9d29-6087922e2300 Correlation ID: 1f207b54-f311-4781-88d1-5a0f0cea3de5 Timestamp: 2025-02-26 16:02:16Z',
    source: 'https://github.com/canonical/authd/issues/814',
    row: 'aadsts-50057',
    class: 'auth',
  },
  {
    text: 'AADSTS50057: User account is disabled.',
    source: 'https://github.com/Azure/azure-cli/issues/8566',
    row: 'aadsts-50057',
    class: 'auth',
    note: 'the 2019 wording; the error_description cut before its Trace ID',
  },
  // The user's password expired.
  {
    text: 'AADSTS50055: Password is expired.',
    source: 'https://github.com/AtlasPublicPolicy/power-bi-embedded/issues/11',
    row: 'aadsts-50055',
    class: 'auth',
  },
  // The app (its service principal) is disabled in the tenant, or by Microsoft.
  {
    text: "AADSTS7000112: Application 'c0eceb27-8cd3-4bb8-9271-c90596069f74'(OOFSponder) is disabled.",
    source: 'https://github.com/EvanBasalik/OOFSponder/issues/42',
    row: 'aadsts-7000112',
    class: 'auth',
  },
  {
    text: "AADSTS7000112: Application '8b0c024c-7823-3774-2da8-a8d8b7ed331a'(worklytics-azuread-connector) is disabled.",
    source: 'https://github.com/Worklytics/psoxy/pull/74',
    row: 'aadsts-7000112',
    class: 'auth',
    note: 'the error_description of an unauthorized_client answer, quoted in the README the pull request adds',
  },
  // A resource the app registration does not list.
  {
    text: 'AADSTS650057: Invalid resource. The client has requested access to a resource which is not listed in the requested permissions in the client\'s application registration. Client app ID: [redacted]. Resource value from request: 499b84ac-1321-427f-aa17-267ca6975798. Resource app ID: 499b84ac-1321-427f-aa17-267ca6975798. List of valid resources from app registration: 00000003-0000-0000-c000-000000000000.\nTrace ID: c9a71cf7-bc64-446e-80f0-b9dc47c35600\nCorrelation ID: ca198b06-4d06-4d45-8dfa-835540dd27ea\nTimestamp: 2022-04-22 20:18:07Z',
    source: 'https://github.com/microsoft/azure-devops-auth-samples/issues/90',
    row: 'aadsts-650057',
    class: 'auth',
  },
  {
    text: "AADSTS650057: Invalid resource. The client has requested access to a resource which is not listed in the requested permissions in the client's application registration. Client app ID: b714eb58-a73d-479b-bf14-0d7a1556bba2(appDT). Resource value from request: 0b07f429-9f4b-4714-9392-cc5e8e80c8b0. Resource app ID: 0b07f429-9f4b-4714-9392-cc5e8e80c8b0. List of valid resources from app registration: 00000003-0000-0000-c000-000000000000.",
    source: 'https://github.com/Azure-Samples/IoTDemos/issues/40',
    row: 'aadsts-650057',
    class: 'auth',
  },
  // A public client (device code, auth code on a desktop platform) sent a secret.
  {
    text: "(invalid_client) AADSTS700025: Client is public so neither 'client_assertion' nor 'client_secret' should be presented.\n\nTrace ID: 43d77fa0-0f4d-4b83-ac05-b05592320801\n\nCorrelation ID: 6f214225-c2c2-4b66-b2bb-232bd77f8e5d\n\nTimestamp: 2020-06-19 14:12:06Z",
    source: 'https://github.com/O365/python-o365/issues/469',
    row: 'aadsts-700025',
    class: 'auth',
  },
  {
    text: "AADSTS700025: Client is public so neither 'client_assertion' nor 'client_secret' should be presented.\n\tTrace ID: abdc4945-8a1c-4f70-b891-1c6f69207b00\n\tCorrelation ID: 8284c2d3-f550-492c-8423-259b3982415e\n\tTimestamp: 2022-07-29 12:41:44Z",
    source: 'https://github.com/MicrosoftDocs/azure-docs/issues/96567',
    row: 'aadsts-700025',
    class: 'auth',
  },
  // Security Defaults blocked the sign-in at the token endpoint.
  {
    text: 'BlockedBySecurityDefaults - Access has been blocked by security defaults. This is due to the request using legacy auth or being deemed unsafe by security defaults policies.',
    code: 'AADSTS530035',
    source: 'https://learn.microsoft.com/entra/identity-platform/reference-error-codes',
    row: 'aadsts-530035',
    class: 'auth',
    note: "the Learn page's table row (its docs repository: MicrosoftDocs/azure-docs#115250 added it); the code is in the row's first column",
  },
  // The refresh token was revoked: a password change or an admin's revoke (not its use).
  {
    text: "AADSTS50173: The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password. The grant was issued on '2021-07-19T14:01:41.1468970Z' and the TokensValidFrom date (before which tokens are not valid) for this user is '2021-10-13T19:49:51.0000000Z'.\nTrace ID: 95ef993f-b3dd-4b7c-a102-7e169585da00\nCorrelation ID: 84f7ed71-97dc-44bb-a496-015cf0b6ccc6\nTimestamp: 2021-10-18 15:18:52Z",
    source: 'https://github.com/microsoft/vscode/issues/135299',
    row: 'aadsts-50173',
    class: 'auth',
    note: 'after "Fetching remote diagnostics for \'Azure ML\' failed: invalid_grant: 50173 - [2021-10-18 15:18:52Z]: "',
  },
  {
    text: "AADSTS50173: The provided grant has expired due to it being revoked. The user might have changed or reset their password. The grant was issued on '2017-11-26T09:16:07.5290000Z' and the TokensValidFrom date for this user is '2017-11-27T17:35:50.0000000Z'\nTrace ID: \nCorrelation ID: \nTimestamp: 2017-12-03 07:57:31Z",
    source: 'https://github.com/wkh237/react-native-azure-ad/issues/31',
    row: 'aadsts-50173',
    class: 'auth',
    note: 'the 2017 wording',
  },
  // The certificate credential's assertion is refused.
  {
    text: "AADSTS700027: Client assertion contains an invalid signature. [Reason - The key was not found., Thumbprint of key used by client: '1C74D736BEA6C95459FD38D02D0A2514A52FC9E9', Please visit 'https://developer.microsoft.com/en-us/graph/graph-explorer' and query for 'https://graph.microsoft.com/beta/applications/31359c7f-bd7e-475c-86db-fdb8c937548e' to see configured keys]\nTrace ID: c36d5a6e-a82a-49c5-9af1-a6e16de60a00\nCorrelation ID: b13d6979-8e3c-4ea1-8050-e69ca4550ab5",
    source: 'https://github.com/pnp/cli-microsoft365/issues/1621',
    row: 'aadsts-700027',
    class: 'auth',
  },
  {
    text: "AADSTS700027: The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '<thumbprint>', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '<1pappId>'.",
    source: 'https://github.com/AzureAD/microsoft-authentication-library-for-js/issues/8339',
    row: 'aadsts-700027',
    class: 'auth',
    note: 'MSAL Node 5.0.4, 2026 wording; cut after the app id (the text goes on with links to the Graph docs)',
  },
  // A password sign-in (ROPC) with a wrong user name or password.
  {
    text: 'AADSTS50126: Error validating credentials due to invalid username or password. Trace ID: 4a3235bb-aad5-43de-9757-45195c574800 Correlation ID: f9f47a60-a02b-4410-8aa5-b28815ff397b Timestamp: 2024-10-18 21:57:51Z',
    source: 'https://github.com/MscrmTools/XrmToolBox/issues/1366',
    row: 'aadsts-50126',
    class: 'auth',
  },
  {
    text: 'AADSTS50126: Error validating credentials due to invalid username or password.',
    source: 'https://github.com/jasonrollins/shareplum/issues/185',
    row: 'aadsts-50126',
    class: 'auth',
  },
  // The tenant in the authority does not exist (or is in another cloud).
  {
    text: "AADSTS90002: Tenant '4d77a907-f31c-4f84-97b3-26dfea54ac46' not found. This may happen if there are no active subscriptions for the tenant. Check to make sure you have the correct tenant ID. Check with your subscription administrator.",
    source: 'https://github.com/microsoft/azure-tools-for-java/issues/4609',
    row: 'aadsts-90002',
    class: 'auth',
    note: 'the error_description cut before its \\r\\nTrace ID',
  },
  {
    text: 'AADSTS90002: Tenant 9188040d-6c67-4c5b-b112-36a304b66dad not found. This may happen if there are no active subscriptions for the tenant. Check with your subscription administrator.\nTrace ID: 157d5546-510c-4c33-a1f7-e0c210d80e00\nCorrelation ID: 532c1996-a7a3-418d-94ae-9f627bb5109e\nTimestamp: 2018-04-06 09:59:32Z',
    source: 'https://github.com/AzureAD/microsoft-authentication-library-for-android/issues/267',
    row: 'aadsts-90002',
    class: 'auth',
    note: 'the 2018 wording, for the consumers tenant id',
  },
];

/** One Microsoft Graph error answer as users pasted it: the HTTP status, `error.code` and `error.message`. */
export interface RecordedGraphError {
  /** The HTTP status, when the paste shows it (`note` says where it comes from otherwise). */
  readonly status?: number;
  readonly code: string;
  readonly message: string;
  readonly source: string;
  /** The catalogue row and class it must get. */
  readonly row: string;
  readonly class: 'transient' | 'throttled' | 'auth' | 'permanent' | 'blocked';
  readonly note?: string;
}

/** Graph `sendMail` (and mailbox) error answers recorded from Microsoft Learn and public threads (15). */
export const RECORDED_GRAPH_ERRORS: readonly RecordedGraphError[] = [
  // An application access policy (or RBAC for Applications scope) leaves the mailbox out.
  {
    code: 'ErrorAccessDenied',
    message: 'Access to OData is disabled.',
    source: 'https://learn.microsoft.com/graph/auth-limit-mailbox-access',
    row: 'graph-403-access-denied-scoped',
    class: 'auth',
    note: 'Learn, "Handling API errors": "when an API call is denied access due to a configured application access policy"; the page shows the body only',
  },
  {
    status: 403,
    code: 'ErrorAccessDenied',
    message: 'Access to OData is disabled.',
    source: 'https://github.com/OfficeDev/office-js-docs-pr/issues/2808',
    row: 'graph-403-access-denied-scoped',
    class: 'auth',
    note: 'pasted as "HTTP/1.1 403 Forbidden" and the JSON body',
  },
  // The app lacks the permission (or its consent) for the mailbox.
  {
    status: 403,
    code: 'ErrorAccessDenied',
    message: 'Access is denied. Check credentials and try again.',
    source: 'https://github.com/microsoftgraph/microsoft-graph-docs-contrib/issues/3736',
    row: 'graph-403-access-denied',
    class: 'auth',
    note: 'a /me/sendMail call; GraphError {"statusCode":403,"code":"ErrorAccessDenied",...}',
  },
  {
    code: 'ErrorAccessDenied',
    message: 'Access is denied. Check credentials and try again.',
    source: 'https://github.com/kartverket/skyline/issues/78',
    row: 'graph-403-access-denied',
    class: 'auth',
    note: 'an SMTP-to-Graph relay: the app had Mail.Send as a delegated, not an application, permission; the log shows code and message only',
  },
  // A token without roles or scopes (no admin consent, or an app-only token on /me).
  {
    status: 401,
    code: 'NoPermissionsInAccessToken',
    message: 'The token contains no permissions, or permissions can not be understood.',
    source: 'https://learn.microsoft.com/troubleshoot/entra/entra-id/users-groups-entra-apis/error-call-me-endpoint-microsoft-graph',
    row: 'graph-401-no-permissions',
    class: 'auth',
    note: 'the page shows the body (code, message, innerError); the 401 is the status shared/M365.md gives it',
  },
  {
    code: 'NoPermissionsInAccessToken',
    message: 'The token contains no permissions, or permissions can not be\nunderstood.',
    source: 'https://learn.microsoft.com/answers/questions/473955/the-token-contains-no-permissions-or-permissions-c',
    row: 'graph-401-no-permissions',
    class: 'auth',
    note: 'the line break as pasted',
  },
  // From is not the mailbox and no SendAs right.
  {
    status: 403,
    code: 'ErrorSendAsDenied',
    message:
      'The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account., Cannot submit message.',
    source: 'https://github.com/microsoftgraph/msgraph-sdk-php/issues/1499',
    row: 'graph-403-sendas-denied',
    class: 'permanent',
    note: 'POST /users/.../sendMail "resulted in a `403 Forbidden` response"',
  },
  {
    code: 'ErrorSendAsDenied',
    message:
      'The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account., Cannot submit message.',
    source: 'https://github.com/SMTP2Graph/SMTP2Graph/issues/28',
    row: 'graph-403-sendas-denied',
    class: 'permanent',
    note: "a printer's scan-to-mail through an SMTP-to-Graph relay; an @ in the From display name",
  },
  // The user has no Exchange Online mailbox.
  {
    code: 'MailboxNotEnabledForRESTAPI',
    message: 'The mailbox is either inactive, soft-deleted, or is hosted on-premise.',
    source: 'https://github.com/iyear/E5SubBot/issues/39',
    row: 'graph-404-mailbox-not-enabled',
    class: 'permanent',
    note: 'the body as the bot printed it; status not shown',
  },
  {
    code: 'MailboxNotEnabledForRESTAPI',
    message: 'The mailbox is either inactive, soft-deleted, or is hosted on-premise.',
    source: 'https://github.com/microsoft/MicrosoftCloud/issues/41',
    row: 'graph-404-mailbox-not-enabled',
    class: 'permanent',
    note: 'the issue title: "Code: MailboxNotEnabledForRESTAPI Message: ..."',
  },
  // The user is unknown in the token's tenant.
  {
    code: 'ErrorInvalidUser',
    message: "The requested user 'example@domain.tld' is invalid.",
    source: 'https://github.com/InnoGE/laravel-msgraph-mail/issues/16',
    row: 'graph-404-invalid-user',
    class: 'permanent',
    note: "a Graph mail driver's send; the user's primary address was on another domain; status not shown",
  },
  // The mailbox is full.
  {
    code: 'ErrorQuotaExceeded',
    message: 'Mailbox has exceeded maximum mailbox size.',
    source: 'https://github.com/microsoftgraph/microsoft-graph-docs/issues/2927',
    row: 'graph-error-quota-exceeded',
    class: 'blocked',
    note: 'pasted as ReplyBodyError: { ErrorCode, ErrorMessage }; microsoftgraph/microsoft-graph-docs#3935 met the code on sendMail',
  },
  // Over the 4 concurrent requests per mailbox.
  {
    status: 429,
    code: 'ApplicationThrottled',
    message: 'Application is over its MailboxConcurrency limit.',
    source: 'https://github.com/magodo/terraform-provider-outlook/issues/21',
    row: 'graph-429-mailbox-concurrency',
    class: 'throttled',
  },
  {
    code: 'ApplicationThrottled',
    message: 'Application is over its MailboxConcurrency limit.',
    source: 'https://github.com/alcionai/corso/issues/3695',
    row: 'graph-429-mailbox-concurrency',
    class: 'throttled',
    note: 'odataerror_code and odataerror_message of a logged error',
  },
  // Over the mailbox's maximum message size.
  {
    code: 'ErrorMessageSizeExceeded',
    message: 'The message exceeds the maximum supported size.',
    source: 'https://github.com/microsoftgraph/microsoft-graph-docs/issues/15579',
    row: 'graph-message-size-exceeded',
    class: 'permanent',
    note: 'an upload session for a 43 MB attachment; status not shown',
  },
];
